"""Backup targets (what to back up, when, where) and backups (seed 000 BackupJob, seed 001 Backup
Record, seed 003 Backup Records in one table)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.backups.retention import GFS_CLASSES
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, SoftDelete, Timestamps, UUIDPk, live_unique
from pilothouse.core.types import str_enum

BACKUP_STATUSES = ("in_progress", "completed", "failed", "expired")
TRIGGERS = ("scheduled", "manual", "pre_deployment")
BACKUP_TYPES = ("full", "incremental", "manual")
ENGINES = ("postgresql", "mariadb", "sqlite")


class BackupTarget(UUIDPk, Timestamps, SoftDelete, Base):
    """One database that pilothouse backs up: its engine, encrypted DSN, schedules and policy."""

    __tablename__ = "backup_targets"
    __table_args__ = (live_unique("uq_backup_targets_live_name", "name"),)

    owner_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id"), default=None)
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("environments.id"), default=None, index=True
    )
    name: Mapped[str] = mapped_column(sa.String(100))
    engine: Mapped[str] = mapped_column(str_enum(*ENGINES, name="backup_engine"))
    database_name: Mapped[str] = mapped_column(sa.String(255))
    dsn_encrypted: Mapped[str] = mapped_column(sa.Text)  # base64 of an encrypted stream
    dsn_display: Mapped[str] = mapped_column(sa.String(1000))  # password replaced by ***
    # No column default: None means "no schedule" (the defaults live in TargetCreate).
    schedule: Mapped[str | None] = mapped_column(sa.String(100))
    drill_schedule: Mapped[str | None] = mapped_column(sa.String(100))
    storage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    retention: Mapped[dict[str, Any]] = mapped_column(default=dict)
    max_retries: Mapped[int] = mapped_column(default=3)
    retry_delay_seconds: Mapped[int] = mapped_column(default=300)
    before_deploy: Mapped[bool] = mapped_column(default=False)
    enabled: Mapped[bool] = mapped_column(default=True)
    # Record per-table content checksums in the dump's snapshot, compared by drills.
    content_checksums: Mapped[bool] = mapped_column(default=True, server_default=sa.true())


class Backup(UUIDPk, Base):
    """One backup run and everything known about its object."""

    __tablename__ = "backups"
    __table_args__ = (
        sa.Index("ix_backups_environment_status", "environment", "status"),
        sa.Index("ix_backups_retention_expires_at", "retention_expires_at"),
        sa.Index("ix_backups_started_at", "started_at"),
        sa.Index("ix_backups_target_started", "target_id", "started_at"),
        # One scheduled backup per target and slot, however many workers race for it.
        sa.UniqueConstraint("target_id", "scheduled_for", name="uq_backups_target_slot"),
    )

    target_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("backup_targets.id"))
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("environments.id"), default=None
    )
    name: Mapped[str] = mapped_column(sa.String(120))  # backup_YYYYMMDD_HHMMSS
    backup_type: Mapped[str] = mapped_column(str_enum(*BACKUP_TYPES, name="backup_type"))
    environment: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(
        str_enum(*BACKUP_STATUSES, name="backup_status"), default="in_progress"
    )
    triggered_by: Mapped[str] = mapped_column(str_enum(*TRIGGERS, name="backup_trigger"))
    gfs_class: Mapped[str | None] = mapped_column(
        str_enum(*GFS_CLASSES, name="backup_gfs_class"), default=None
    )
    is_monthly_archive: Mapped[bool] = mapped_column(default=False)
    scheduled_for: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_seconds: Mapped[int | None] = mapped_column(default=None)
    engine: Mapped[str] = mapped_column(str_enum(*ENGINES, name="backup_engine"))
    database_name: Mapped[str] = mapped_column(sa.String(255))
    dump_tool_version: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    stored_bytes: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    backup_size_mb: Mapped[int | None] = mapped_column(default=None)
    compressed_size_mb: Mapped[int | None] = mapped_column(default=None)
    compression_ratio: Mapped[float | None] = mapped_column(sa.Float, default=None)
    encrypted: Mapped[bool] = mapped_column(default=True)
    encryption_algorithm: Mapped[str] = mapped_column(sa.String(40), default="AES-256-GCM")
    compression: Mapped[str] = mapped_column(sa.String(40), default="zstd")
    key_id: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    checksum_sha256: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    storage_kind: Mapped[str] = mapped_column(sa.String(20), default="local")
    object_key: Mapped[str] = mapped_column(sa.String(500))
    storage_location: Mapped[str] = mapped_column(sa.String(1000))
    storage_url: Mapped[str] = mapped_column(sa.String(1500))
    table_counts: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    table_checksums: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    integrity_check_passed: Mapped[bool | None] = mapped_column(default=None)
    integrity_check_at: Mapped[datetime | None] = mapped_column(default=None)
    integrity_detail: Mapped[str | None] = mapped_column(sa.Text, default=None)
    restore_tested: Mapped[bool] = mapped_column(default=False)
    restore_tested_at: Mapped[datetime | None] = mapped_column(default=None)
    restore_test_passed: Mapped[bool | None] = mapped_column(default=None)
    restore_test_detail: Mapped[str | None] = mapped_column(sa.Text, default=None)
    retention_expires_at: Mapped[datetime] = mapped_column()
    error_message: Mapped[str | None] = mapped_column(sa.Text, default=None)
    retry_count: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    artifact_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
