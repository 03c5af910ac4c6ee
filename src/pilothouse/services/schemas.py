"""Request and response bodies for services (seed 004 request/response schemas)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from pilothouse.core.inputs import JsonSettings, NotNull
from pilothouse.core.rules import (
    IMAGE_PATTERN,
    NAME_RE,
    as_validator,
    check_image,
    check_name,
    check_range,
    range_hint,
    schema_hint,
)
from pilothouse.healthchecks.spec import HealthCheckSpec, stored

ServiceStatus = Literal["pending", "scheduled", "running", "stopped", "failed", "deleted"]
Name = Annotated[
    str, AfterValidator(as_validator(check_name)), schema_hint(pattern=NAME_RE.pattern)
]
Image = Annotated[
    str, AfterValidator(as_validator(check_image)), schema_hint(pattern=IMAGE_PATTERN)
]


def _ranged(field: str) -> AfterValidator:
    return AfterValidator(as_validator(lambda v: check_range(field, v)))


Replicas = Annotated[int, _ranged("target_replicas"), range_hint("target_replicas")]
Cpu = Annotated[float, _ranged("cpu_cores"), range_hint("cpu_cores")]
Memory = Annotated[int, _ranged("memory_mb"), range_hint("memory_mb")]
Gpu = Annotated[int, _ranged("gpu_units"), range_hint("gpu_units")]
Storage = Annotated[int, _ranged("storage_gb"), range_hint("storage_gb")]
Settings = Annotated[dict[str, Any], JsonSettings]
# Validated on write (bounded JSON, then the typed model), stored as given (the keys set).
HealthCheck = Annotated[HealthCheckSpec, JsonSettings, PlainSerializer(stored)]


class Resources(BaseModel):
    """Seed 004 DeploymentResource."""

    model_config = ConfigDict(extra="forbid")

    cpu_cores: Cpu = Field(default=0.5, description="CPU cores, 0.5-32, fractional allowed.")
    memory_mb: Memory = Field(default=512, description="Memory in MB, 512-65536.")
    gpu_units: Gpu = Field(default=0, description="GPU units, 0-8.")
    storage_gb: Storage = Field(default=1, description="Storage in GB, 1-1000.")


class ResourcesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu_cores: NotNull[Cpu] = Field(default=None, description="CPU cores, 0.5-32.")
    memory_mb: NotNull[Memory] = Field(default=None, description="Memory in MB, 512-65536.")
    gpu_units: NotNull[Gpu] = Field(default=None, description="GPU units, 0-8.")
    storage_gb: NotNull[Storage] = Field(default=None, description="Storage in GB, 1-1000.")


class ServiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str = Field(description="Environment name or id the service lives in.")
    name: Name = Field(description="Unique in its environment: 1-100 of A-Z a-z 0-9 - _.")
    image: Image | None = Field(default=None, description="Container image, 1-500 characters.")
    command: str | None = Field(
        default=None,
        max_length=4000,
        description=(
            "Command that starts one replica ({port} and {version} are substituted); admin only."
        ),
    )
    target_replicas: Replicas = Field(default=1, description="Desired replicas, 1-100.")
    resources: Resources = Field(default_factory=Resources, description="Resource allocation.")
    public_url: str | None = Field(default=None, max_length=500, description="Public URL.")
    driver_config: Settings = Field(
        default_factory=dict,
        description="Driver settings, validated by the environment's driver (docs/releases.md); "
        "keys other than rollout tuning define programs: admin only.",
    )
    health_check: HealthCheck = Field(
        default_factory=HealthCheckSpec, description="Readiness and health monitoring settings."
    )


class ServiceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: Image | None = Field(default=None, description="New image.")
    command: str | None = Field(
        default=None, max_length=4000, description="New command (admin only)."
    )
    resources: NotNull[ResourcesUpdate] = Field(default=None, description="Changed resources.")
    public_url: str | None = Field(default=None, max_length=500, description="Public URL.")
    driver_config: NotNull[Settings] = Field(
        default=None,
        description="Driver settings, validated by the environment's driver; changing keys other "
        "than rollout tuning is admin only.",
    )
    health_check: NotNull[HealthCheck] = Field(
        default=None, description="Readiness and health monitoring settings (replaced whole)."
    )


class ServiceTransition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: ServiceStatus = Field(description="Target status.")
    reason: str | None = Field(default=None, max_length=1000, description="Why.")


class ServiceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Service id.")
    environment_id: uuid.UUID = Field(description="Environment id.")
    name: str = Field(description="Name.")
    image: str | None = Field(description="Container image.")
    command: str | None = Field(description="Start command.")
    target_replicas: int = Field(description="Desired replicas.")
    cpu_cores: float = Field(description="CPU cores.")
    memory_mb: int = Field(description="Memory, MB.")
    gpu_units: int = Field(description="GPU units.")
    storage_gb: int = Field(description="Storage, GB.")
    public_url: str | None = Field(description="Public URL.")
    driver_config: dict[str, Any] = Field(description="Driver settings.")
    health_check: dict[str, Any] = Field(description="Health check spec.")
    status: ServiceStatus = Field(description="Lifecycle status.")
    owner_id: uuid.UUID = Field(description="Owner.")
    created_at: datetime = Field(description="Created (UTC).")
    updated_at: datetime = Field(description="Last changed (UTC).")


class StopStartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        default=None, max_length=500, description="Why (kept in the history and the audit trail)."
    )


class StopStartResult(ServiceRead):
    deployment_id: uuid.UUID = Field(
        description="The stop or start deployment the release engine carries out (follow it "
        "like any deployment)."
    )
