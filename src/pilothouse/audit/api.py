"""/api/v1/audit (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from pilothouse.audit import service
from pilothouse.deps import Caller, Session

router = APIRouter(tags=["audit"])


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(description="Position in the trail.")
    at: datetime = Field(description="When (UTC).")
    actor: str = Field(description="Who.")
    action: str = Field(description="create, update, delete, transition, grant, revoke, scale...")
    entity_type: str = Field(description="Kind of record.")
    entity_id: str = Field(description="Which record.")
    changes: dict[str, Any] | None = Field(description="What changed (secrets redacted).")


@router.get(
    "/audit", response_model=list[AuditRead], summary="The audit trail, newest first (admin)"
)
async def list_(
    session: Session,
    caller: Caller,
    entity_type: str | None = Query(default=None, description="Only this kind of record."),
    entity_id: str | None = Query(default=None, description="Only this record."),
    limit: int = Query(default=100, ge=1, le=1000, description="Page size."),
    before: int | None = Query(
        default=None, ge=1, le=2**63 - 1, description="Entries with seq below this."
    ),
) -> list[AuditRead]:
    rows = await service.list_entries(
        session, caller, entity_type=entity_type, entity_id=entity_id, limit=limit, before=before
    )
    return [AuditRead.model_validate(r) for r in rows]
