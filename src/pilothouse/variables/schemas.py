"""Request and response bodies for environment variables and requirements."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pilothouse.core.inputs import INT32_MAX, Flag, JsonSettings, NotBool
from pilothouse.core.rules import schema_hint
from pilothouse.variables.rules import KEY_PATTERN, RULES

VarKey = Annotated[str, schema_hint(pattern=KEY_PATTERN.pattern)]


class VarSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: SecretStr = Field(description="The value (stored encrypted; up to 65,536 characters).")
    is_secret: Flag | None = Field(
        default=None,
        description=(
            "true: a secret (masked everywhere unless revealed). Absent or false: a secret stays "
            "one (secrecy is sticky); a new variable is a secret when its name or value looks "
            "secret (*_KEY, *_TOKEN, *SECRET*, a URL with a password...)."
        ),
    )
    plain: Flag = Field(
        default=False,
        description="Store it as a plain (visible) variable, even if it was a secret (audited).",
    )
    service: str | None = Field(default=None, description="Set it for this service only.")


class VarRead(BaseModel):
    key: str = Field(description="Variable name.")
    value: str = Field(description="The value, or ******** for a secret that was not revealed.")
    is_secret: bool = Field(description="Whether it is masked.")
    version: int = Field(description="Version (every change is a new one).")
    scope: str = Field(description="`environment` or the service that overrides it.")
    platform_synced: bool = Field(description="Pushed to an external platform (seed 003).")
    updated_at: datetime = Field(description="Last change (UTC).")
    updated_by: str = Field(description="Who changed it.")


class VarChange(BaseModel):
    key: str = Field(description="Variable name.")
    version: int = Field(description="Its version now.")
    changed: bool = Field(
        description=(
            "False when the value was already that. For a secret, only callers who may reveal "
            "it are told so; for anyone else a secret is always written again (true)."
        )
    )


class VersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int = Field(description="Version number.")
    action: str = Field(description="set, unset or revert.")
    is_secret: bool = Field(description="Whether it was a secret.")
    actor: str = Field(description="Who.")
    created_at: datetime = Field(description="When (UTC).")


class RevertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Annotated[int, NotBool] = Field(
        ge=1, le=INT32_MAX, description="Version whose value to restore."
    )
    service: str | None = Field(default=None, description="Service scope.")


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: Annotated[dict[VarKey, SecretStr], schema_hint(additionalProperties=False)] = Field(
        description="KEY -> value."
    )
    secret_keys: list[str] = Field(
        default_factory=list,
        description="Keys to store as secrets (besides those whose name or value looks secret).",
    )
    plain_keys: list[str] = Field(
        default_factory=list,
        description="Keys to store as plain variables, even if they are secrets now (audited).",
    )
    service: str | None = Field(default=None, description="Service scope.")
    dry_run: Flag = Field(default=False, description="Only report what would change.")


class ImportResult(BaseModel):
    added: list[str] = Field(description="New keys.")
    changed: list[str] = Field(
        description=(
            "Keys whose value or secrecy changes; for callers who may not reveal secrets, every "
            "existing secret (it is written again: its value is never compared for them)."
        )
    )
    unchanged: list[str] = Field(description="Keys already so.")
    secret: list[str] = Field(description="Keys stored (or to be stored) as secrets.")
    applied: bool = Field(description="False for a dry run.")


class RequirementSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    required: Flag = Field(default=True, description="Deployments are refused without it.")
    rule: Annotated[str, schema_hint(enum=list(RULES))] | None = Field(
        default=None,
        description=(
            "Format: url, https_url, postgres_dsn, redis_url, one_of (args.values), "
            "semver_or_sha, integer (args.min, args.max), regex (args.pattern)."
        ),
    )
    args: Annotated[dict[str, Any], JsonSettings] = Field(
        default_factory=dict, description="Arguments of the rule."
    )


class RequirementRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str = Field(description="Variable name.")
    required: Flag = Field(description="Whether it must be set.")
    rule: str | None = Field(description="Format rule.")
    args: dict[str, Any] = Field(description="Arguments of the rule.")


class CheckResult(BaseModel):
    ok: bool = Field(description="True when a deployment would be allowed.")
    problems: list[str] = Field(description="`KEY: rule` for each problem (never values).")
