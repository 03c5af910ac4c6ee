"""/api/v1/services."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from pilothouse.deployments.schemas import DeploymentRead
from pilothouse.deps import Caller, Session
from pilothouse.services import service
from pilothouse.services.schemas import (
    RollbackRequest,
    ScaleRequest,
    ScaleResult,
    ServiceCreate,
    ServiceRead,
    ServiceTransition,
    ServiceUpdate,
)

router = APIRouter(prefix="/services", tags=["services"])
EnvQuery = Query(default=None, description="Environment name or id, when the name is ambiguous.")


@router.post(
    "",
    response_model=ServiceRead,
    status_code=201,
    summary="Create a service (operator; a command or host driver settings: admin)",
)
async def create(body: ServiceCreate, session: Session, caller: Caller) -> ServiceRead:
    data = body.model_dump()
    svc = await service.create_service(session, caller, **data)
    return ServiceRead.model_validate(svc)


@router.get("", response_model=list[ServiceRead], summary="List visible live services")
async def list_(
    session: Session,
    caller: Caller,
    environment: str | None = Query(default=None, description="Only this environment."),
) -> list[ServiceRead]:
    rows = await service.list_services(session, caller, environment=environment)
    return [ServiceRead.model_validate(s) for s in rows]


@router.get("/{ref}", response_model=ServiceRead, summary="Get one by id or name")
async def get(
    ref: str, session: Session, caller: Caller, environment: str | None = EnvQuery
) -> ServiceRead:
    svc = await service.get_service(session, caller, ref, environment=environment)
    return ServiceRead.model_validate(svc)


@router.patch(
    "/{ref}",
    response_model=ServiceRead,
    summary="Update (operator; the command or host driver settings: admin)",
)
async def update(ref: str, body: ServiceUpdate, session: Session, caller: Caller) -> ServiceRead:
    changes = body.model_dump(exclude_unset=True)
    if body.resources is not None:
        changes["resources"] = body.resources.model_dump(exclude_none=True)
    return ServiceRead.model_validate(await service.update_service(session, caller, ref, changes))


@router.post(
    "/{ref}/scale",
    response_model=ScaleResult,
    summary="Set target replicas (operator); a live service gets a scale deployment",
)
async def scale(ref: str, body: ScaleRequest, session: Session, caller: Caller) -> ScaleResult:
    from pilothouse.deployments import service as deployments

    svc, deployment = await deployments.scale(session, caller, ref, body.target_replicas)
    result = ScaleResult.model_validate(svc, from_attributes=True)
    result.deployment_id = deployment.id if deployment else None
    return result


@router.post(
    "/{ref}/transition",
    response_model=ServiceRead,
    summary="Change status (operator; 409 if illegal)",
)
async def transition(
    ref: str, body: ServiceTransition, session: Session, caller: Caller
) -> ServiceRead:
    svc = await service.transition_service(session, caller, ref, body.to, body.reason)
    return ServiceRead.model_validate(svc)


@router.post(
    "/{ref}/rollback",
    response_model=DeploymentRead,
    status_code=201,
    summary="Roll back by hand (operator): to `to`, or the release live before the current one",
    description="The default target is the last release that went live (a deployment of it "
    "succeeded) before the live one and was not rolled back since; a release that never went "
    "live is never a target. 409 when there is none, or when `to` never went live.",
)
async def rollback(
    ref: str,
    body: RollbackRequest,
    session: Session,
    caller: Caller,
    environment: str | None = EnvQuery,
) -> DeploymentRead:
    from pilothouse.deployments import service as deployments

    deployment = await deployments.create_rollback(
        session, caller, ref, environment=environment, to_version=body.to
    )
    return DeploymentRead.model_validate(deployment)


@router.delete("/{ref}", status_code=204, summary="Soft delete (operator); frees the name")
async def delete(ref: str, session: Session, caller: Caller) -> Response:
    await service.delete_service(session, caller, ref)
    return Response(status_code=204)
