"""/api/v1/artifacts."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response

from pilothouse.artifacts import service
from pilothouse.artifacts.schemas import ArtifactCreate, ArtifactRead, ArtifactUpdate
from pilothouse.deps import Caller, Session

router = APIRouter(prefix="/artifacts", tags=["artifacts"])


@router.post("", response_model=ArtifactRead, status_code=201, summary="Register (operator)")
async def register(body: ArtifactCreate, session: Session, caller: Caller) -> ArtifactRead:
    artifact = await service.register_artifact(session, caller, **body.model_dump())
    return ArtifactRead.model_validate(artifact)


@router.get("", response_model=list[ArtifactRead], summary="List, newest first")
async def list_(
    session: Session,
    caller: Caller,
    service_ref: str | None = Query(default=None, alias="service", description="Service."),
    environment: str | None = Query(default=None, description="Environment of the service."),
    limit: int = Query(default=100, ge=1, le=1000, description="Page size."),
) -> list[ArtifactRead]:
    rows = await service.list_artifacts(
        session, caller, service=service_ref, environment=environment, limit=limit
    )
    return [ArtifactRead.model_validate(a) for a in rows]


@router.get("/{artifact_id}", response_model=ArtifactRead, summary="Get one")
async def get(artifact_id: uuid.UUID, session: Session, caller: Caller) -> ArtifactRead:
    return ArtifactRead.model_validate(await service.get_artifact(session, caller, artifact_id))


@router.patch("/{artifact_id}", response_model=ArtifactRead, summary="Update the changelog")
async def update(
    artifact_id: uuid.UUID, body: ArtifactUpdate, session: Session, caller: Caller
) -> ArtifactRead:
    changes = body.model_dump(exclude_unset=True)
    artifact = await service.update_artifact(session, caller, artifact_id, changes)
    return ArtifactRead.model_validate(artifact)


@router.delete("/{artifact_id}", status_code=204, summary="Soft delete (not the deployed one)")
async def delete(artifact_id: uuid.UUID, session: Session, caller: Caller) -> Response:
    await service.delete_artifact(session, caller, artifact_id)
    return Response(status_code=204)
