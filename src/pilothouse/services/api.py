"""/api/v1/services (scaling and rolling back a service record deployments: deployments/api.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Response

from pilothouse.deps import Caller, Session
from pilothouse.services import lifecycle, service
from pilothouse.services.schemas import (
    ServiceCreate,
    ServiceRead,
    ServiceTransition,
    ServiceUpdate,
    StopStartRequest,
    StopStartResult,
)

if TYPE_CHECKING:
    from pilothouse.deployments.models import Deployment
    from pilothouse.services.models import Service

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
    "/{ref}/transition",
    response_model=ServiceRead,
    summary="Change status (operator; 409 if illegal)",
)
async def transition(
    ref: str, body: ServiceTransition, session: Session, caller: Caller
) -> ServiceRead:
    svc = await service.transition_service(session, caller, ref, body.to, body.reason)
    return ServiceRead.model_validate(svc)


def _stop_start_result(svc: Service, deployment: Deployment) -> StopStartResult:
    return StopStartResult.model_validate(
        {**ServiceRead.model_validate(svc).model_dump(), "deployment_id": deployment.id}
    )


@router.post(
    "/{ref}/stop",
    response_model=StopStartResult,
    status_code=202,
    summary="Stop a service (operator): drain and stop its replicas, remove its router entry",
    description="The service is `stopped` at once: not probed, not counted as downtime, its "
    "replicas never restarted. A `stop` deployment carries the stop out (follow it with "
    "`deployment_id`). 409 when it is already stopped, has no live release, or has an active "
    "deployment; deploys to a stopped service are refused until `POST /services/{ref}/start`.",
)
async def stop(
    ref: str,
    session: Session,
    caller: Caller,
    body: StopStartRequest | None = None,
    environment: str | None = EnvQuery,
) -> StopStartResult:
    svc, deployment = await lifecycle.stop_service(
        session, caller, ref, environment=environment, reason=body.reason if body else None
    )
    return _stop_start_result(svc, deployment)


@router.post(
    "/{ref}/start",
    response_model=StopStartResult,
    status_code=202,
    summary="Start a stopped service (operator) at its live release",
    description="A `start` deployment brings `target_replicas` replicas of the live release "
    "back (no build, migration or backup), health-gated, and routes them. 409 unless the "
    "service is stopped.",
)
async def start(
    ref: str,
    session: Session,
    caller: Caller,
    body: StopStartRequest | None = None,
    environment: str | None = EnvQuery,
) -> StopStartResult:
    svc, deployment = await lifecycle.start_service(
        session, caller, ref, environment=environment, reason=body.reason if body else None
    )
    return _stop_start_result(svc, deployment)


@router.delete("/{ref}", status_code=204, summary="Soft delete (operator); frees the name")
async def delete(ref: str, session: Session, caller: Caller) -> Response:
    await service.delete_service(session, caller, ref)
    return Response(status_code=204)
