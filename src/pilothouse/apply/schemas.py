"""Request and response bodies for plan, apply and export."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pilothouse.apply.load import MAX_BYTES
from pilothouse.core.inputs import Flag


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: str = Field(
        max_length=MAX_BYTES,
        description="The pilothouse.yaml text (validated here: every problem is reported at "
        "once with its line and column).",
    )
    prune: Flag = Field(default=False, description="Delete live objects the file does not mention.")
    expect: str | None = Field(
        default=None,
        max_length=64,
        description="Apply only if the plan's fingerprint is still this one (409 otherwise): "
        "what the CLI confirmed.",
    )


class FieldChangeRead(BaseModel):
    field: str = Field(description="Dotted path of the field, e.g. `resources.cpu_cores`.")
    before: Any = Field(description="Live value (null when unset); secrets as `<secret ...>`.")
    after: Any = Field(description="Value from the file; secrets as `<secret from ...>`.")


class ChangeRead(BaseModel):
    action: Literal["create", "update", "delete"] = Field(description="What happens.")
    kind: str = Field(
        description="environment, requirement, service, scaling_policy, domain, backup_target, "
        "alert_rule, channel."
    )
    key: str = Field(description="Its name (`environment/name` for what lives in one).")
    fields: list[FieldChangeRead] = Field(description="Field-level changes.")


class PlanRead(BaseModel):
    fingerprint: str = Field(description="Identifies this plan (pass it back as `expect`).")
    changes: list[ChangeRead] = Field(description="Creates and updates, then deletes.")
    counts: dict[str, int] = Field(description="Number of creates, updates and deletes.")
    unmanaged: list[str] = Field(
        description="Live objects the file does not mention (`kind key`): deleted only with prune."
    )
    applied: bool = Field(description="True when the changes were made.")


class ExportRead(BaseModel):
    document: str = Field(description="The live state as pilothouse.yaml text.")
