"""Artifacts (seed 001 Deployment Artifact): at most one deployed per service."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, SoftDelete, UUIDPk, live_unique


class Artifact(UUIDPk, SoftDelete, Base):
    __tablename__ = "artifacts"
    __table_args__ = (
        live_unique("uq_artifacts_live_service_version", "service_id", "version"),
        # Seed 001: only one artifact can be the deployed one (per service).
        sa.Index(
            "uq_artifacts_one_deployed",
            "service_id",
            unique=True,
            sqlite_where=sa.text("deployed"),
            postgresql_where=sa.text("deployed"),
        ),
        sa.Index("ix_artifacts_service_created", "service_id", "created_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"))
    version: Mapped[str] = mapped_column(sa.String(100))
    commit_sha: Mapped[str] = mapped_column(sa.String(40), index=True)
    git_tag: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    image_uri: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    image_digest: Mapped[str | None] = mapped_column(sa.String(71), default=None)
    size_mb: Mapped[int | None] = mapped_column(default=None)
    changelog: Mapped[str | None] = mapped_column(sa.Text, default=None)
    deployed: Mapped[bool] = mapped_column(default=False)
    deployed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Seed 001: pruned after 30 days unless a rollback could return to it
    # (artifacts/retention.py); the record stays, it can no longer be deployed.
    pruned_at: Mapped[datetime | None] = mapped_column(default=None)
