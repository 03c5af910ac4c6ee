"""Request and response bodies for environments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from pilothouse.core.inputs import Flag, JsonSettings, NotBool, NotNull
from pilothouse.core.rules import NAME_RE, as_validator, check_name, schema_hint
from pilothouse.drivers import registry

EnvType = Literal["development", "staging", "production"]
# A registered driver (drivers/registry.py); anything else is a 422 naming the known ones.
Driver = Annotated[
    str,
    AfterValidator(registry.check_name),
    Field(json_schema_extra={"enum": registry.names()}),
]
Name = Annotated[
    str, AfterValidator(as_validator(check_name)), schema_hint(pattern=NAME_RE.pattern)
]
Features = Annotated[dict[str, Flag], JsonSettings]


class EnvironmentConfig(BaseModel):
    """An environment's `config`: its dependencies (probed by the health monitor) and any
    other non-secret settings (unknown keys are kept)."""

    model_config = ConfigDict(extra="allow")

    database_url: str | None = Field(
        default=None, max_length=2000, description="PostgreSQL the services use (probed)."
    )
    redis_url: str | None = Field(
        default=None, max_length=2000, description="Redis the services use (probed)."
    )
    dependency_interval: float = Field(
        default=60.0, gt=0, le=86400, description="Seconds between dependency probes."
    )
    placement: Literal["binpack", "spread"] | None = Field(
        default=None,
        description="Place replicas on nodes with a capacity check: binpack or spread "
        "(docs/nodes.md); unset: only container environments are placed (binpack).",
    )
    node_labels: dict[str, str] | None = Field(
        default=None, description="Place replicas only on nodes carrying all these labels."
    )


def _stored_config(config: EnvironmentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude_unset=True)


# Bounded JSON first, then the typed model; stored as given (only the keys that were set).
Config = Annotated[EnvironmentConfig, JsonSettings, PlainSerializer(_stored_config)]


class Limits(BaseModel):
    """Seed 002 EnvironmentLimits; all optional, all non-negative."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent_users: Annotated[int, Field(ge=0), NotBool] | None = Field(
        default=None, description="Users at once."
    )
    api_rate_limit: Annotated[int, Field(ge=0), NotBool] | None = Field(
        default=None, description="Requests per minute."
    )
    storage_quota_gb: Annotated[int, Field(ge=0), NotBool] | None = Field(
        default=None, description="Storage quota, GB."
    )
    bandwidth_limit_gb: Annotated[int, Field(ge=0), NotBool] | None = Field(
        default=None, description="Bandwidth, GB."
    )
    max_deployment_frequency: Annotated[int, Field(ge=1, le=1000), NotBool] | None = Field(
        default=None,
        description="Deployments allowed per service per hour (rollbacks and scales are exempt).",
    )


class EnvironmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique among live environments: 1-100 of A-Z a-z 0-9 - _.")
    type: EnvType = Field(default="development", description="development, staging, production.")
    domain: str | None = Field(default=None, max_length=253, description="Base domain.")
    driver: Driver = Field(default="process", description="Deployment driver for its services.")
    config: Config = Field(
        default_factory=EnvironmentConfig,
        description=(
            "Settings, validated on write (`database_url`, `redis_url`, `dependency_interval`; "
            "other keys are kept). Credentials in URLs are sealed and shown masked."
        ),
    )
    features: Features = Field(default_factory=dict, description="Feature flags.")
    limits: Limits = Field(default_factory=Limits, description="Operational limits.")


class EnvironmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: NotNull[EnvType] = Field(default=None, description="New type.")
    domain: str | None = Field(default=None, max_length=253, description="New domain (null: none).")
    driver: NotNull[Driver] = Field(default=None, description="New driver.")
    config: NotNull[Config] = Field(default=None, description="Replaces the config.")
    features: NotNull[Features] = Field(default=None, description="Replaces the flags.")
    limits: NotNull[Limits] = Field(default=None, description="Replaces the limits.")
    is_active: NotNull[Flag] = Field(default=None, description="Inactive environments refuse work.")


class EnvironmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Environment id.")
    name: str = Field(description="Name.")
    type: EnvType = Field(description="Type.")
    domain: str | None = Field(description="Base domain.")
    driver: str = Field(description="Deployment driver.")
    config: dict[str, Any] = Field(description="Settings.")
    features: dict[str, bool] = Field(description="Feature flags.")
    limits: dict[str, Any] = Field(description="Operational limits.")
    is_active: bool = Field(description="Whether it accepts work.")
    owner_id: uuid.UUID = Field(description="Owner.")
    created_at: datetime = Field(description="Created (UTC).")
    updated_at: datetime = Field(description="Last changed (UTC).")


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(description="User name or id to grant access to the environment.")
