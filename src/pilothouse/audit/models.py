"""audit_log: who did what to which record, when. Never holds a secret value."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.db import Base
from pilothouse.core.types import JSONType


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_log_entity", "entity_type", "entity_id"),
        sa.Index("ix_audit_log_at", "at"),
    )

    seq: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column()
    actor_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    actor: Mapped[str] = mapped_column(sa.String(100))
    action: Mapped[str] = mapped_column(sa.String(50))
    entity_type: Mapped[str] = mapped_column(sa.String(50))
    entity_id: Mapped[str] = mapped_column(sa.String(64))
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
