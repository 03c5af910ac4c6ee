"""Request and response bodies for deployments and their logs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pilothouse.core.inputs import Flag, IsoDateTime, JsonSettings, NotBool
from pilothouse.core.rules import keep_commit_message
from pilothouse.services.schemas import Replicas, ServiceRead

DeploymentStatus = Literal["pending", "building", "deploying", "success", "failed", "rolled_back"]
EventType = Literal["deploy", "rollback", "restart", "config_update", "scale"]
#: What a deployment record may be: also a service stop or start (recorded by
#: POST /services/{ref}/stop and /start, never through POST /deployments).
RecordedEventType = Literal[
    "deploy", "rollback", "restart", "config_update", "scale", "stop", "start"
]
Trigger = Literal["manual", "ci", "automated", "github_action"]
LogLevel = Literal["debug", "info", "warn", "error"]
CommitMessage = Annotated[str, AfterValidator(keep_commit_message)]

MAX_BATCH = 10_000


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str = Field(description="Service name or id to deploy to.")
    environment: str | None = Field(
        default=None, description="Environment, when the service name is ambiguous."
    )
    version: str = Field(
        min_length=1, max_length=100, description="Version of a registered artifact of the service."
    )
    event_type: EventType = Field(default="deploy", description="What kind of rollout this is.")
    triggered_by: Trigger = Field(default="manual", description="Who or what started it.")
    commit_message: CommitMessage | None = Field(
        default=None, description="Commit message; kept to its first 500 characters."
    )
    rollback_from: uuid.UUID | None = Field(
        default=None, description="For event_type rollback: the deployment being rolled back."
    )
    ci_run_id: str | None = Field(default=None, max_length=100, description="CI run id.")
    logs_url: str | None = Field(default=None, max_length=1000, description="External log URL.")


class DeploymentTransition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: DeploymentStatus = Field(description="Target status; must be allowed from the current one.")
    reason: str | None = Field(default=None, max_length=2000, description="Why (kept in history).")
    error_message: str | None = Field(
        default=None, max_length=10000, description="Error details, for failed."
    )
    rollback_reason: str | None = Field(
        default=None, max_length=2000, description="Reason, for rolled_back."
    )
    health_check_passed: Flag | None = Field(default=None, description="Post-deploy check result.")
    instances_deployed: Annotated[int, Field(ge=0, le=100), NotBool] | None = Field(
        default=None, description="Replicas running the new artifact."
    )


class DeploymentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Deployment id.")
    service_id: uuid.UUID = Field(description="Service.")
    environment_id: uuid.UUID = Field(description="Environment.")
    artifact_id: uuid.UUID | None = Field(description="Artifact being deployed.")
    previous_artifact_id: uuid.UUID | None = Field(description="Artifact live before it.")
    rollback_from: uuid.UUID | None = Field(description="Deployment this one rolls back.")
    version: str = Field(description="Version deployed.")
    commit_sha: str | None = Field(description="Commit SHA of the artifact.")
    commit_message: str | None = Field(description="Commit message (500 characters at most).")
    status: DeploymentStatus = Field(description="Status.")
    event_type: RecordedEventType = Field(
        description="Kind of rollout; stop and start are a service being stopped or started."
    )
    triggered_by: Trigger = Field(description="Trigger.")
    operator: str = Field(description="User who started it.")
    started_at: datetime | None = Field(description="When work began.")
    completed_at: datetime | None = Field(description="When it ended.")
    build_time_ms: int | None = Field(description="Build time, ms.")
    deploy_time_ms: int | None = Field(description="Deploy time, ms.")
    duration_seconds: int | None = Field(description="Total duration, s.")
    migration_applied: bool = Field(description="Whether a migration ran.")
    migration_version: str | None = Field(description="Migration version applied.")
    backup_created: bool = Field(description="Whether a pre-deployment backup was taken.")
    backup_id: uuid.UUID | None = Field(description="That backup.")
    restore_backup_ids: list[uuid.UUID] | None = Field(
        default=None,
        description="A rollback with data: the pre-deployment backups it restores.",
    )
    data_restored_at: datetime | None = Field(
        default=None, description="A rollback with data: when its backups were restored."
    )
    health_check_passed: bool = Field(description="Post-deploy verification result.")
    instances_deployed: int = Field(description="Replicas of the new artifact.")
    error_message: str | None = Field(description="Failure details.")
    rollback_reason: str | None = Field(description="Why it was rolled back.")
    ci_run_id: str | None = Field(description="CI run id.")
    logs_url: str | None = Field(description="External log URL.")
    created_at: datetime = Field(description="Recorded at (UTC).")
    archived_at: datetime | None = Field(
        default=None, description="Archived (older than 90 days; hidden from default lists)."
    )
    updated_at: datetime = Field(description="Last changed (UTC).")


class DeploymentPage(BaseModel):
    items: list[DeploymentRead] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


class LogLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=65536, description="The line.")
    level: LogLevel = Field(default="info", description="debug, info, warn or error.")
    source: str = Field(
        default="deploy", min_length=1, max_length=50, description="build, deploy, verification..."
    )
    timestamp: IsoDateTime | None = Field(
        default=None, description="When it was emitted; default now."
    )
    metadata: Annotated[dict[str, Any], JsonSettings] | None = Field(
        default=None, description="Structured context (at most 64 KiB as JSON)."
    )


class LogBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[LogLine] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} lines, kept in order."
    )


class LogRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(description="Position; pass the last one as `after` to follow.")
    timestamp: datetime = Field(description="When it was emitted (UTC).")
    level: LogLevel = Field(description="Level.")
    source: str = Field(description="Source.")
    message: str = Field(description="The line.")
    metadata: dict[str, Any] | None = Field(
        default=None, validation_alias="meta", description="Structured context."
    )


class LogPage(BaseModel):
    items: list[LogRead] = Field(description="Oldest first.")
    last_seq: int | None = Field(description="seq of the last line returned.")


class Accepted(BaseModel):
    accepted: int = Field(description="Lines stored.")


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_replicas: Replicas = Field(description="Desired replicas, 1-100.")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(
        default=None,
        description="Version to roll back to; it must have gone live once. Default: the release "
        "live before the current one.",
    )
    with_data: Flag = Field(
        default=False,
        description="Also restore the pre-deployment backup of the release being left (taken "
        "before its migration), before the rollout; 409 when it has none that fits.",
    )


class BackupOffered(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Backup id.")
    name: str = Field(description="Backup name.")
    target: str = Field(description="Backup target (the database it restores into).")
    database: str = Field(description="Database name.")
    taken_at: datetime | None = Field(description="When it was taken (UTC).")
    stored_bytes: int | None = Field(description="Size of the stored object.")


class DataRestoreRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    available: bool = Field(description="Whether the rollback can restore data.")
    from_version: str | None = Field(description="The release whose migration it undoes.")
    backups: list[BackupOffered] = Field(description="The pre-deployment backups it restores.")
    reason: str | None = Field(description="Why no data restore is available.")


class RollbackPreview(BaseModel):
    service: str = Field(description="Service name.")
    from_version: str = Field(description="The live release, which the rollback leaves.")
    to_version: str = Field(description="The release it returns to.")
    data_restore: DataRestoreRead = Field(description="What `with_data` would restore.")


class RollbackRead(DeploymentRead):
    data_restore: DataRestoreRead = Field(
        description="What this rollback restores (with_data), or could have restored."
    )


class ScaleResult(ServiceRead):
    deployment_id: uuid.UUID | None = Field(
        default=None,
        description="The scale deployment bringing the replicas to the new count (live services).",
    )


PinSource = Literal["environment", "service", "feature", "config"]
Change = Literal["added", "removed", "changed"]


class PinRead(BaseModel):
    key: str = Field(description="Variable name.")
    source: PinSource = Field(
        description="environment or service (a variable), feature (a flag), config (the "
        "environment's config.env, pinned by name only)."
    )
    version: str = Field(
        description="The pinned version (`v3`), a flag's state (`on`/`off`), or `-` for config.env."
    )
    secret: bool = Field(description="Whether the variable is a secret (its value is never shown).")


class ConfigRead(BaseModel):
    deployment_id: uuid.UUID = Field(description="The release (deployment).")
    version: str = Field(description="Artifact version of the release.")
    pinned: bool = Field(
        description="False for a deployment recorded before pinning or not started yet."
    )
    pinned_at: datetime | None = Field(description="When its config was pinned (UTC).")
    copied_from: uuid.UUID | None = Field(
        description="The release whose pins a rollback or a scale delivered."
    )
    variables: list[PinRead] = Field(description="Names and versions, never values.")
    driver_settings: dict[str, Any] | None = Field(
        description="Driver, target replicas and driver_config it ran with (driver_config.env "
        "by name only; values that look secret masked)."
    )


class ReleaseRef(BaseModel):
    deployment_id: uuid.UUID = Field(description="Deployment id.")
    service_id: uuid.UUID = Field(description="Service.")
    version: str = Field(description="Artifact version.")
    artifact_id: uuid.UUID | None = Field(description="Artifact.")
    commit_sha: str | None = Field(description="Commit SHA of the artifact.")
    event_type: EventType = Field(description="Kind of rollout.")
    status: DeploymentStatus = Field(description="Status.")
    created_at: datetime = Field(description="Recorded at (UTC).")
    pinned: bool = Field(description="Whether its config is pinned.")


class VarChangeRead(BaseModel):
    key: str = Field(description="Variable name.")
    change: Change = Field(description="added, removed or changed (version or source).")
    source_from: PinSource | None = Field(description="Source in the first release.")
    source_to: PinSource | None = Field(description="Source in the second release.")
    version_from: str | None = Field(description="Version in the first release.")
    version_to: str | None = Field(description="Version in the second release.")
    secret: bool = Field(description="Whether it is a secret (values are never shown).")


class SettingChangeRead(BaseModel):
    key: str = Field(description="driver, target_replicas, driver_config.KEY.")
    change: Change = Field(description="added, removed or changed.")
    before: str | None = Field(description="Value in the first release (`********` if masked).")
    after: str | None = Field(description="Value in the second release (`********` if masked).")


class ReleaseDiffRead(BaseModel):
    from_release: ReleaseRef = Field(description="The first release.")
    to_release: ReleaseRef = Field(description="The second release.")
    artifact_changed: bool = Field(description="Whether the artifact (version) differs.")
    variables: list[VarChangeRead] = Field(description="Variables that differ, by name.")
    driver_settings: list[SettingChangeRead] = Field(description="Driver settings that differ.")
    notes: list[str] = Field(description="What could not be compared, and why.")
