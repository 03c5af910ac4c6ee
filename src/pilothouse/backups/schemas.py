"""Request and response bodies for backup targets and backups."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from pilothouse.backups.retention import GFS_CLASSES
from pilothouse.backups.schedule import check_cron
from pilothouse.core.inputs import Flag, NotBool, NotNull
from pilothouse.core.rules import NAME_RE, as_validator, check_name, schema_hint

Name = Annotated[
    str, AfterValidator(as_validator(check_name)), schema_hint(pattern=NAME_RE.pattern)
]


CRON_MAX = 100  # the schedule columns' length
DSN_MAX = 1000  # the display column's length


def _cron(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > CRON_MAX:
        raise ValueError(f"must be at most {CRON_MAX} characters")
    problem = check_cron(value)
    if problem:
        raise ValueError(problem)
    return value


Cron = Annotated[str | None, AfterValidator(_cron), schema_hint(maxLength=CRON_MAX)]


def _retention(value: dict[str, int] | None) -> dict[str, int] | None:
    for key, days in (value or {}).items():
        if key not in GFS_CLASSES:
            raise ValueError(f"unknown class {key!r}: use {', '.join(GFS_CLASSES)}")
        if not 1 <= days <= 3650:
            raise ValueError(f"{key} must be kept 1-3650 days")
    return value


Retention = Annotated[
    dict[
        Annotated[str, schema_hint(enum=list(GFS_CLASSES))],
        Annotated[int, schema_hint(minimum=1, maximum=3650)],
    ]
    | None,
    AfterValidator(_retention),
]


class StorageConfig(BaseModel):
    """Where objects go. S3 credentials come from the standard AWS environment, never stored."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "s3"] = Field(default="local", description="local or s3.")
    path: str | None = Field(
        default=None, description="local: directory (default <data_dir>/backups)."
    )
    bucket: str | None = Field(
        default=None, min_length=3, max_length=63, description="s3: bucket name."
    )
    prefix: str | None = Field(default=None, max_length=200, description="s3: key prefix.")
    endpoint_url: str | None = Field(
        default=None, description="s3: endpoint of an S3-compatible service (default AWS)."
    )
    region: str | None = Field(default=None, description="s3: region (default us-east-1).")

    @model_validator(mode="after")
    def _complete(self) -> StorageConfig:
        if self.kind == "s3" and not self.bucket:
            raise ValueError("bucket is required for s3 storage")
        if self.kind == "local" and self.path and not self.path.startswith("/"):
            raise ValueError("path must be absolute")
        return self


class TargetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique target name: 1-100 of A-Z a-z 0-9 - _.")
    dsn: SecretStr = Field(
        max_length=DSN_MAX,
        description=(
            "Database URL: postgresql://user:pass@host:5432/db, mariadb://user:pass@host/db or "
            "sqlite:////abs/path.db. Stored encrypted; shown afterwards with the password hidden."
        ),
    )
    environment: str | None = Field(
        default=None, description="Environment name or id (pre-deployment backups run for it)."
    )
    schedule: Cron = Field(
        default="0 2 * * *",
        description=(
            "Cron (UTC) for scheduled backups; empty for none. In a development environment the "
            "default is none and a schedule is refused (422) unless `force` is true (seed 000)."
        ),
    )
    drill_schedule: Cron = Field(
        default="0 4 * * L0",
        description="Cron (UTC) for restore drills; default last Sunday of the month 04:00.",
    )
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Storage.")
    retention: Retention = Field(
        default=None,
        description="Days kept per class: daily 30, weekly 183, monthly 365, manual 365.",
    )
    max_retries: Annotated[int, NotBool] = Field(
        default=3, ge=0, le=10, description="Retries of a failed backup."
    )
    retry_delay_seconds: Annotated[int, NotBool] = Field(
        default=300, ge=1, le=86400, description="Seconds between retries (default 5 minutes)."
    )
    before_deploy: Flag = Field(
        default=False, description="Back up before each deployment in its environment."
    )
    enabled: Flag = Field(default=True, description="Whether schedules run.")
    content_checksums: Flag = Field(
        default=True,
        description=(
            "Record a content checksum per table in the dump's own snapshot, which restore "
            "drills compare (not only row counts)."
        ),
    )
    force: Flag = Field(
        default=False,
        description="Allow a backup schedule in a development environment (refused otherwise).",
    )


class TargetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dsn: NotNull[Annotated[SecretStr, Field(max_length=DSN_MAX)]] = Field(
        default=None, description="New database URL."
    )
    schedule: Cron = Field(default=None, description="Cron (UTC); empty string for none.")
    drill_schedule: Cron = Field(default=None, description="Cron (UTC); empty for none.")
    storage: NotNull[StorageConfig] = Field(default=None, description="Storage.")
    retention: Retention = Field(default=None, description="Days kept per class.")
    max_retries: NotNull[Annotated[int, Field(ge=0, le=10), NotBool]] = Field(
        default=None, description="Retries."
    )
    retry_delay_seconds: NotNull[Annotated[int, Field(ge=1, le=86400), NotBool]] = Field(
        default=None, description="Seconds between retries."
    )
    before_deploy: NotNull[Flag] = Field(default=None, description="Back up before deployments.")
    enabled: NotNull[Flag] = Field(default=None, description="Whether schedules run.")
    content_checksums: NotNull[Flag] = Field(
        default=None, description="Record per-table content checksums (compared by drills)."
    )
    force: Flag = Field(
        default=False,
        description="Allow a backup schedule in a development environment (refused otherwise).",
    )


class TargetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Target id.")
    name: str = Field(description="Name.")
    engine: str = Field(description="postgresql, mariadb or sqlite.")
    database_name: str = Field(description="Database backed up.")
    dsn: str = Field(validation_alias="dsn_display", description="URL, password shown as ***.")
    environment_id: uuid.UUID | None = Field(description="Environment.")
    schedule: str | None = Field(description="Backup cron (UTC).")
    drill_schedule: str | None = Field(description="Drill cron (UTC).")
    storage: dict[str, Any] = Field(description="Storage settings.")
    retention: dict[str, Any] = Field(description="Days kept per class (overrides).")
    max_retries: int = Field(description="Retries of a failed backup.")
    retry_delay_seconds: int = Field(description="Seconds between retries.")
    before_deploy: bool = Field(description="Backed up before deployments.")
    enabled: bool = Field(description="Whether schedules run.")
    content_checksums: bool = Field(description="Records per-table content checksums.")
    created_at: datetime = Field(description="Created (UTC).")
    last_verified_at: datetime | None = Field(
        default=None, description="When its newest verified backup completed (UTC)."
    )
    last_verified_age_seconds: int | None = Field(
        default=None, description="Age of its newest verified backup, in seconds."
    )
    due_by: datetime | None = Field(
        default=None,
        description="When it becomes overdue without a new verified backup: the newest one's "
        "time plus the schedule interval plus the grace (null: no schedule, or disabled).",
    )
    overdue: bool = Field(
        default=False, description="No verified backup for its schedule interval plus the grace."
    )


class BackupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500, description="Why (audit log).")


class BackupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Backup id.")
    name: str = Field(description="backup_YYYYMMDD_HHMMSS.")
    target_id: uuid.UUID = Field(description="Target.")
    backup_type: str = Field(description="full or manual (seed 000).")
    environment: str = Field(description="Environment name, or `pilothouse` for self-backups.")
    status: str = Field(description="in_progress, completed, failed or expired.")
    triggered_by: str = Field(description="scheduled, manual or pre_deployment.")
    gfs_class: str | None = Field(description="daily, weekly, monthly or manual.")
    is_monthly_archive: bool = Field(description="First backup of its month.")
    started_at: datetime = Field(description="Started (UTC).")
    completed_at: datetime | None = Field(description="Finished (UTC).")
    duration_seconds: int | None = Field(description="Duration.")
    engine: str = Field(description="postgresql, mariadb or sqlite.")
    database_name: str = Field(description="Database backed up.")
    dump_tool_version: str | None = Field(description="pg_dump/mariadb-dump/sqlite version.")
    size_bytes: int | None = Field(description="Dump size before compression.")
    stored_bytes: int | None = Field(description="Object size (compressed, encrypted).")
    backup_size_mb: int | None = Field(description="Dump size in MB.")
    compressed_size_mb: int | None = Field(description="Object size in MB.")
    compression_ratio: float | None = Field(description="stored / dump size.")
    encrypted: bool = Field(description="Always true.")
    encryption_algorithm: str = Field(description="AES-256-GCM.")
    key_id: str | None = Field(description="Id of the key that encrypted it.")
    checksum_sha256: str | None = Field(description="SHA-256 of the object.")
    storage_location: str = Field(description="Directory or s3://bucket/prefix.")
    storage_url: str = Field(description="Full URL of the object.")
    table_counts: dict[str, Any] | None = Field(description="Rows per table at backup time.")
    table_checksums: dict[str, Any] | None = Field(
        description="Content checksum per table, taken in the dump's snapshot (16 hex digits)."
    )
    integrity_check_passed: bool | None = Field(description="Integrity check result.")
    integrity_check_at: datetime | None = Field(description="When it ran.")
    integrity_detail: str | None = Field(description="What it found.")
    restore_tested: bool = Field(description="Whether a restore drill ran.")
    restore_tested_at: datetime | None = Field(description="When.")
    restore_test_passed: bool | None = Field(description="Drill result.")
    restore_test_detail: str | None = Field(description="What the drill found.")
    retention_expires_at: datetime = Field(description="When cleanup deletes it.")
    error_message: str | None = Field(description="Why it failed.")
    retry_count: int = Field(description="Retries so far.")
    next_attempt_at: datetime | None = Field(description="Next retry, if one is due.")
    deployment_id: uuid.UUID | None = Field(description="Deployment it ran before.")
    artifact_id: uuid.UUID | None = Field(description="Artifact live at the time.")
