"""Response bodies for status history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EntityKind = Literal["deployment", "service", "replica", "backup"]


class StatusChange(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    entity_type: EntityKind = Field(description="deployment, service, replica or backup.")
    entity_id: uuid.UUID = Field(description="The record.")
    from_status: str | None = Field(description="Status before (null when created).")
    to_status: str = Field(description="Status after.")
    actor: str = Field(description="Who made the change.")
    changed_by: uuid.UUID | None = Field(description="Their user id (null for the system).")
    reason: str | None = Field(description="Why.")
    changed_at: datetime = Field(description="When (UTC).")
