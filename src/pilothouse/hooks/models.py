"""Deploy hooks and the deliveries they received.

A hook is named (its URL is /api/v1/hooks/<name>), holds an HMAC secret sealed with the master
keyring (`secret_encrypted`, never shown) and rules mapping a branch or tag pattern to an
environment and a service. What identifies each request a hook accepted is remembered (unique
per hook), so a replayed request is refused: `delivery` holds the generic format's signed
delivery id, or `sha256=<hex>` of a GitHub body (GitHub does not sign its delivery id).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, UUIDPk
from pilothouse.core.types import JSONType


class DeployHook(UUIDPk, Base):
    __tablename__ = "deploy_hooks"
    __table_args__ = (sa.UniqueConstraint("name", name="uq_deploy_hooks_name"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(sa.String(100))
    secret_encrypted: Mapped[str] = mapped_column(sa.Text)
    key_id: Mapped[str] = mapped_column(sa.String(16))
    #: [{"branch" | "tag": glob, "environment": name, "service": name}], first match wins.
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_delivery_at: Mapped[datetime | None] = mapped_column(default=None)


class HookDelivery(UUIDPk, Base):
    __tablename__ = "hook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("hook_id", "delivery", name="uq_hook_deliveries_hook_id_delivery"),
    )

    hook_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("deploy_hooks.id", ondelete="CASCADE"), index=True
    )
    delivery: Mapped[str] = mapped_column(sa.String(100))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(sa.String(500))
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
