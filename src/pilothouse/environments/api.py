"""/api/v1/environments."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pilothouse.deps import Caller, Session
from pilothouse.environments import service
from pilothouse.environments.schemas import (
    EnvironmentCreate,
    EnvironmentRead,
    EnvironmentUpdate,
    GrantCreate,
)

router = APIRouter(prefix="/environments", tags=["environments"])


@router.post("", response_model=EnvironmentRead, status_code=201, summary="Create (admin)")
async def create(body: EnvironmentCreate, session: Session, caller: Caller) -> EnvironmentRead:
    data = body.model_dump()
    data["limits"] = body.limits.model_dump(exclude_none=True)
    env = await service.create_environment(session, caller, **data)
    return EnvironmentRead.model_validate(env)


@router.get("", response_model=list[EnvironmentRead], summary="List visible environments")
async def list_(session: Session, caller: Caller) -> list[EnvironmentRead]:
    return [
        EnvironmentRead.model_validate(e) for e in await service.list_environments(session, caller)
    ]


@router.get("/{ref}", response_model=EnvironmentRead, summary="Get one by id or name")
async def get(ref: str, session: Session, caller: Caller) -> EnvironmentRead:
    return EnvironmentRead.model_validate(await service.get_environment(session, caller, ref))


@router.patch("/{ref}", response_model=EnvironmentRead, summary="Update (admin)")
async def update(
    ref: str, body: EnvironmentUpdate, session: Session, caller: Caller
) -> EnvironmentRead:
    changes = body.model_dump(exclude_unset=True)
    if body.limits is not None:
        changes["limits"] = body.limits.model_dump(exclude_none=True)
    env = await service.update_environment(session, caller, ref, changes)
    return EnvironmentRead.model_validate(env)


@router.delete("/{ref}", status_code=204, summary="Soft delete (admin); frees the name")
async def delete(ref: str, session: Session, caller: Caller) -> Response:
    await service.delete_environment(session, caller, ref)
    return Response(status_code=204)


@router.post("/{ref}/grants", status_code=204, summary="Grant a user access (admin)")
async def grant(ref: str, body: GrantCreate, session: Session, caller: Caller) -> Response:
    await service.grant(session, caller, ref, body.user)
    return Response(status_code=204)


@router.delete("/{ref}/grants/{user}", status_code=204, summary="Remove a grant (admin)")
async def revoke(ref: str, user: str, session: Session, caller: Caller) -> Response:
    await service.revoke_grant(session, caller, ref, user)
    return Response(status_code=204)
