"""Request and response bodies for users and tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pilothouse.core.inputs import Flag, NotBool
from pilothouse.core.rules import NAME_RE, as_validator, check_name, schema_hint

Role = Literal["viewer", "deployer", "operator", "admin"]
Name = Annotated[
    str, AfterValidator(as_validator(check_name)), schema_hint(pattern=NAME_RE.pattern)
]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique user name: 1-100 of A-Z a-z 0-9 - _.")
    role: Role = Field(
        description="viewer (read), deployer (CI: register artifacts, deploy and roll back in "
        "the environments granted to it; tokens expire), operator (deploy, scale, settings), "
        "admin (everything)."
    )
    email: str | None = Field(default=None, max_length=320, description="Contact address.")
    with_token: Flag = Field(default=True, description="Also issue a first API token.")


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="User id.")
    name: str = Field(description="User name.")
    role: Role = Field(description="Role.")
    email: str | None = Field(description="Contact address.")
    is_active: bool = Field(description="False once disabled.")
    created_at: datetime = Field(description="When the user was created (UTC).")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(
        default=None, description="User name or id the token is for; default: the caller."
    )
    name: str = Field(default="cli", min_length=1, max_length=100, description="A label.")
    expires_in_days: Annotated[int, Field(ge=1, le=3650), NotBool] | None = Field(
        default=None,
        description="Lifetime in days; default: never expires (a deployer's token: 90 days, "
        "at most 365).",
    )
    ingest_environment: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Make it an ingest token for this environment (name or id): it may push "
        "metrics into it (POST /metrics/ingest) and do nothing else.",
    )


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Token id (used to revoke it).")
    user_id: uuid.UUID = Field(description="Owner of the token.")
    name: str = Field(description="Label.")
    prefix: str = Field(description="First characters of the token, to recognise it.")
    created_at: datetime = Field(description="Issued at (UTC).")
    last_used_at: datetime | None = Field(description="Last successful use (minute precision).")
    expires_at: datetime | None = Field(description="Expiry, if any.")
    revoked_at: datetime | None = Field(description="Revocation time, if revoked.")
    scope: str | None = Field(default=None, description='"ingest" for an ingest token, else none.')
    environment_id: uuid.UUID | None = Field(
        default=None, description="The environment an ingest token pushes metrics into."
    )


class TokenIssued(TokenRead):
    token: str = Field(description="The token itself. Shown once: it is stored only as a hash.")


class UserCreated(UserRead):
    token: TokenIssued | None = Field(default=None, description="First token, shown once.")
