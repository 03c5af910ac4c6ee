"""/api/v1/services/{ref}/replicas (read-only; the drivers write replicas)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from pilothouse.deps import Caller, Session
from pilothouse.replicas import service
from pilothouse.replicas.schemas import ReplicaRead

router = APIRouter(tags=["replicas"])


@router.get(
    "/services/{ref}/replicas", response_model=list[ReplicaRead], summary="A service's replicas"
)
async def list_(
    ref: str,
    session: Session,
    caller: Caller,
    environment: str | None = Query(default=None, description="Environment of the service."),
) -> list[ReplicaRead]:
    rows = await service.list_replicas(session, caller, ref, environment=environment)
    return [ReplicaRead.model_validate(r) for r in rows]
