"""Services (seed 004 Deployment + DeploymentResource, seed 001 service)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.db import Base, SoftDelete, Timestamps, UUIDPk, live_unique
from pilothouse.core.types import str_enum

SERVICE_STATUSES = ("pending", "scheduled", "running", "stopped", "failed", "deleted")


class Service(UUIDPk, Timestamps, SoftDelete, Base):
    __tablename__ = "services"
    __table_args__ = (
        live_unique("uq_services_live_env_name", "environment_id", "name"),
        sa.Index("ix_services_owner_deleted", "owner_id", "deleted_at"),
        sa.CheckConstraint("target_replicas BETWEEN 1 AND 100", name="target_replicas_range"),
        sa.CheckConstraint("cpu_cores >= 0.5 AND cpu_cores <= 32", name="cpu_range"),
        sa.CheckConstraint("memory_mb BETWEEN 512 AND 65536", name="memory_range"),
        sa.CheckConstraint("gpu_units BETWEEN 0 AND 8", name="gpu_range"),
        sa.CheckConstraint("storage_gb BETWEEN 1 AND 1000", name="storage_range"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    name: Mapped[str] = mapped_column(sa.String(100))
    image: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    command: Mapped[str | None] = mapped_column(sa.Text, default=None)
    target_replicas: Mapped[int] = mapped_column(default=1)
    cpu_cores: Mapped[float] = mapped_column(sa.Float, default=0.5)
    memory_mb: Mapped[int] = mapped_column(default=512)
    gpu_units: Mapped[int] = mapped_column(default=0)
    storage_gb: Mapped[int] = mapped_column(default=1)
    public_url: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    driver_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    health_check: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(
        str_enum(*SERVICE_STATUSES, name="service_status"), default="pending"
    )
