"""/api/v1/history/{entity_type}/{ref}."""

from __future__ import annotations

from fastapi import APIRouter

from pilothouse.deps import Caller, Session
from pilothouse.history import reader
from pilothouse.history.schemas import EntityKind, StatusChange

router = APIRouter(tags=["history"])


@router.get(
    "/history/{entity_type}/{ref}",
    response_model=list[StatusChange],
    summary="Every status change of a deployment, service, replica or backup, oldest first",
)
async def history(
    entity_type: EntityKind, ref: str, session: Session, caller: Caller
) -> list[StatusChange]:
    rows = await reader.history_of(session, caller, entity_type, ref)
    return [StatusChange.model_validate(r) for r in rows]
