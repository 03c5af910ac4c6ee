"""Request and response bodies for deploy hooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from pilothouse.core.rules import NAME_RE, as_validator, check_name, schema_hint

Name = Annotated[
    str, AfterValidator(as_validator(check_name)), schema_hint(pattern=NAME_RE.pattern)
]
Pattern = Annotated[str, Field(min_length=1, max_length=200)]


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branch: Pattern | None = Field(default=None, description="Branch glob, e.g. main, release/*.")
    tag: Pattern | None = Field(default=None, description="Tag glob, e.g. v*.")
    environment: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        description="Environment deployed to."
    )
    service: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        description="Service deployed."
    )

    @model_validator(mode="after")
    def _one_ref(self) -> RuleSpec:
        if (self.branch is None) == (self.tag is None):
            raise ValueError("give exactly one of branch or tag")
        return self


class HookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Hook name: its URL is /api/v1/hooks/<name>.")
    secret: SecretStr = Field(
        min_length=16,
        max_length=500,
        description="HMAC-SHA256 key shared with the sender (GitHub's webhook secret); sealed, "
        "never shown again.",
    )
    rules: list[RuleSpec] = Field(
        min_length=1, max_length=50, description="Branch or tag -> environment and service."
    )


class HookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Hook id.")
    name: str = Field(description="Name (URL /api/v1/hooks/<name>).")
    rules: list[dict[str, Any]] = Field(description="Branch or tag -> environment and service.")
    is_active: bool = Field(description="Whether it accepts deliveries.")
    created_at: datetime = Field(description="Created (UTC).")
    last_delivery_at: datetime | None = Field(description="Last accepted delivery (UTC).")


class HookResult(BaseModel):
    outcome: str = Field(description="deployed, ignored: <why>, or the refusal.")
    deployment_id: uuid.UUID | None = Field(default=None, description="The deployment made.")
    version: str | None = Field(default=None, description="The artifact version deployed.")
