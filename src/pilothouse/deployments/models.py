"""Deployments (seeds 000, 001, 002, 004) and deployment logs (seed 002 DeploymentLog)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, Timestamps, UUIDPk
from pilothouse.core.types import JSONType, str_enum

DEPLOYMENT_STATUSES = ("pending", "building", "deploying", "success", "failed", "rolled_back")
ACTIVE_STATUSES = ("pending", "building", "deploying")
ACTIVE_WHERE = "status IN ('pending', 'building', 'deploying')"
EVENT_TYPES = ("deploy", "rollback", "restart", "config_update", "scale", "stop", "start")
TRIGGERS = ("manual", "ci", "automated", "github_action")
LOG_LEVELS = ("debug", "info", "warn", "error")


class Deployment(UUIDPk, Timestamps, Base):
    __tablename__ = "deployments"
    __table_args__ = (
        sa.Index("ix_deployments_service_created", "service_id", "created_at", "id"),
        sa.Index("ix_deployments_environment_status", "environment_id", "status"),
        sa.Index("ix_deployments_owner_created", "owner_id", "created_at"),
        sa.Index("ix_deployments_created_at", "created_at"),
        sa.Index("ix_deployments_status_created", "status", "created_at"),
        sa.Index("ix_deployments_archived_at", "archived_at"),
        # One active deployment per service, enforced by the database so it holds across
        # every pilothouse process sharing it.
        sa.Index(
            "uq_deployments_one_active",
            "service_id",
            unique=True,
            sqlite_where=sa.text(ACTIVE_WHERE),
            postgresql_where=sa.text(ACTIVE_WHERE),
        ),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"))
    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    artifact_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("artifacts.id"), default=None
    )
    previous_artifact_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("artifacts.id"), default=None
    )
    rollback_from: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("deployments.id"), default=None
    )
    version: Mapped[str] = mapped_column(sa.String(100))
    commit_sha: Mapped[str | None] = mapped_column(sa.String(40), default=None, index=True)
    commit_message: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    status: Mapped[str] = mapped_column(
        str_enum(*DEPLOYMENT_STATUSES, name="deployment_status"), default="pending"
    )
    event_type: Mapped[str] = mapped_column(
        str_enum(*EVENT_TYPES, name="deployment_event_type"), default="deploy"
    )
    triggered_by: Mapped[str] = mapped_column(
        str_enum(*TRIGGERS, name="deployment_trigger"), default="manual", index=True
    )
    operator: Mapped[str] = mapped_column(sa.String(100))
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    build_time_ms: Mapped[int | None] = mapped_column(default=None)
    deploy_time_ms: Mapped[int | None] = mapped_column(default=None)
    duration_seconds: Mapped[int | None] = mapped_column(default=None)
    migration_applied: Mapped[bool] = mapped_column(default=False)
    migration_version: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    backup_created: Mapped[bool] = mapped_column(default=False)
    backup_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    # A rollback with data: the pre-deployment backups it restores (ids, as strings), and when
    # the restore finished (deployments/withdata.py).
    restore_backup_ids: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    data_restored_at: Mapped[datetime | None] = mapped_column(default=None)
    health_check_passed: Mapped[bool] = mapped_column(default=False)
    instances_deployed: Mapped[int] = mapped_column(default=0)
    error_message: Mapped[str | None] = mapped_column(sa.Text, default=None)
    rollback_reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    ci_run_id: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    logs_url: Mapped[str | None] = mapped_column(sa.String(1000), default=None)
    artifacts_url: Mapped[str | None] = mapped_column(sa.String(1000), default=None)
    # Which worker is carrying it out, until when; an expired lease means that worker died.
    lease_owner: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # Seed 000: archived after 90 days (deployments/retention.py): hidden from default lists,
    # kept for audit.
    archived_at: Mapped[datetime | None] = mapped_column(default=None)
    # Pinned config (docs/releases.md "Pinned config"): when the variables this release delivers
    # were pinned (its DeploymentPin rows), the release whose pins a rollback, a scale, a stop
    # or a start copied, and the driver settings it ran with (driver_config.env by name only).
    config_pinned_at: Mapped[datetime | None] = mapped_column(default=None)
    config_from: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("deployments.id"), default=None
    )
    driver_settings: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)


PIN_SOURCES = ("environment", "service", "feature", "config")


class DeploymentPin(UUIDPk, Base):
    """One variable a deployment delivered: its name, where it came from and which version;
    never its value (that stays sealed in env_var_versions). Feature flags have no versions:
    their pin is the flag's state. `config.env` keys are pinned by name only."""

    __tablename__ = "deployment_pins"
    __table_args__ = (
        sa.UniqueConstraint("deployment_id", "key", name="uq_deployment_pins_deployment_key"),
    )

    deployment_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("deployments.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(sa.String(255))
    source: Mapped[str] = mapped_column(str_enum(*PIN_SOURCES, name="pin_source"))
    var_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("env_vars.id"), default=None)
    version: Mapped[int | None] = mapped_column(default=None)
    is_secret: Mapped[bool] = mapped_column(default=False)
    enabled: Mapped[bool | None] = mapped_column(default=None)  # feature flags only


class DeploymentLog(Base):
    """Append-only log lines; an integer key keeps insertion order and makes a follow cursor."""

    __tablename__ = "deployment_logs"
    __table_args__ = (sa.Index("ix_deployment_logs_deployment_seq", "deployment_id", "seq"),)

    seq: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("deployments.id", ondelete="CASCADE")
    )
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(str_enum(*LOG_LEVELS, name="log_level"), default="info")
    source: Mapped[str] = mapped_column(sa.String(50), default="deploy")
    message: Mapped[str] = mapped_column(sa.Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType, default=None)
