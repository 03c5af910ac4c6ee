"""Request and response bodies for notification channels."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pilothouse.core.inputs import Flag, JsonSettings, NotNull
from pilothouse.core.rules import NAME_RE, as_validator, check_name, schema_hint

Name = Annotated[
    str, AfterValidator(as_validator(check_name)), schema_hint(pattern=NAME_RE.pattern)
]
CONFIG_HELP = (
    "webhook: url (absolute http(s)), secret (HMAC-SHA256 key); slack: url; email: host, "
    "port (integer 1-65535), from, to (list of addresses), starttls, username, password. "
    "Validated when written; credentials (URLs, secret, password) are sealed and never shown "
    "again."
)
DeployEvent = Literal["started", "succeeded", "failed", "rolled_back"]
EVENTS_HELP = (
    "Deployment events this channel receives (opt-in, none by default): started, succeeded, "
    "failed, rolled_back (automatic and manual rollbacks)."
)
ENVIRONMENTS_HELP = (
    "Environments (names) whose deployment events this channel receives; empty: every "
    "environment (a channel that belongs to an environment only ever receives that one's)."
)
EnvironmentName = Annotated[str, Field(min_length=1, max_length=100)]


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique channel name.")
    kind: Literal["webhook", "slack", "email"] = Field(description="webhook, slack or email.")
    config: Annotated[dict[str, Any], JsonSettings] = Field(description=CONFIG_HELP)
    environment: str | None = Field(
        default=None,
        description="Environment (name or id) whose granted users may see the channel.",
    )
    deploy_events: list[DeployEvent] = Field(
        default_factory=list, max_length=4, description=EVENTS_HELP
    )
    deploy_environments: list[EnvironmentName] = Field(
        default_factory=list, max_length=100, description=ENVIRONMENTS_HELP
    )


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: NotNull[Annotated[dict[str, Any], JsonSettings]] = Field(
        default=None, description="Replaces the settings."
    )
    is_active: NotNull[Flag] = Field(default=None, description="Whether it receives alerts.")
    deploy_events: NotNull[Annotated[list[DeployEvent], Field(max_length=4)]] = Field(
        default=None, description="Replaces the opted-in deployment events. " + EVENTS_HELP
    )
    deploy_environments: NotNull[Annotated[list[EnvironmentName], Field(max_length=100)]] = Field(
        default=None, description="Replaces the environments. " + ENVIRONMENTS_HELP
    )


class ChannelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Channel id.")
    name: str = Field(description="Name.")
    kind: str = Field(description="webhook, slack or email.")
    environment_id: uuid.UUID | None = Field(description="Environment it belongs to, if any.")
    config: dict[str, Any] = Field(
        description="Settings; credentials shown as *** and URLs as scheme://host/***."
    )
    is_active: bool = Field(description="Whether it receives alerts.")
    created_at: datetime = Field(description="Created (UTC).")
    last_success_at: datetime | None = Field(description="Last accepted delivery (UTC).")
    last_failure_at: datetime | None = Field(description="Last failed delivery (UTC).")
    last_error: str | None = Field(description="Why the last failed delivery failed.")
    consecutive_failures: int = Field(description="Failed deliveries since the last success.")
    deploy_events: list[str] = Field(description=EVENTS_HELP)
    deploy_environments: list[str] = Field(description=ENVIRONMENTS_HELP)


class ChannelTest(BaseModel):
    delivered: bool = Field(description="Whether the test message was accepted.")
    detail: str = Field(description="What happened.")
