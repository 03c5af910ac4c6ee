"""Request and response bodies for notification channels."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pilothouse.core.inputs import JsonSettings
from pilothouse.core.rules import NAME_RE, as_validator, check_name, schema_hint

Name = Annotated[
    str, AfterValidator(as_validator(check_name)), schema_hint(pattern=NAME_RE.pattern)
]


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique channel name.")
    kind: Literal["webhook", "slack", "email"] = Field(description="webhook, slack or email.")
    config: Annotated[dict[str, Any], JsonSettings] = Field(
        description=(
            "webhook: url, secret (HMAC-SHA256 key); slack: url; email: host, port, from, to "
            "(list), starttls, username, password. Secret values are never shown again."
        )
    )

    @model_validator(mode="after")
    def _required(self) -> ChannelCreate:
        needed = {"webhook": ("url",), "slack": ("url",), "email": ("host", "to")}[self.kind]
        for key in needed:
            if not self.config.get(key):
                raise ValueError(f"config.{key} is required for a {self.kind} channel")
        url = str(self.config.get("url", "http://"))
        if not url.startswith(("http://", "https://")):
            raise ValueError("config.url must start with http:// or https://")
        return self


class ChannelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Channel id.")
    name: str = Field(description="Name.")
    kind: str = Field(description="webhook, slack or email.")
    config: dict[str, Any] = Field(description="Settings, secret values shown as ***.")
    is_active: bool = Field(description="Whether it receives alerts.")
    created_at: datetime = Field(description="Created (UTC).")


class ChannelTest(BaseModel):
    delivered: bool = Field(description="Whether the test message was accepted.")
    detail: str = Field(description="What happened.")
