"""status_history (seed 004 DeploymentStatusHistory, generalised to every entity kind)."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.db import Base, UUIDPk
from pilothouse.core.types import str_enum

ENTITY_KINDS = ("deployment", "service", "replica", "service_health", "replica_health", "backup")


class StatusHistory(UUIDPk, Base):
    """Never updated or deleted (database triggers refuse both)."""

    __tablename__ = "status_history"
    __table_args__ = (
        sa.Index("ix_status_history_entity", "entity_type", "entity_id", "changed_at"),
    )

    entity_type: Mapped[str] = mapped_column(str_enum(*ENTITY_KINDS, name="entity_kind"))
    entity_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    from_status: Mapped[str | None] = mapped_column(sa.String(32))
    to_status: Mapped[str] = mapped_column(sa.String(32))
    changed_by: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    actor: Mapped[str] = mapped_column(sa.String(100))
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    changed_at: Mapped[datetime] = mapped_column()
