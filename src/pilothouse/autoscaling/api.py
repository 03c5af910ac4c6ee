"""/api/v1/services/{ref}/scaling: a service's scaling policy (get, set, delete), its scaling
events, and what-if replays of a policy over stored metrics."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from pilothouse.autoscaling import service
from pilothouse.autoscaling.schemas import (
    EventRead,
    PolicyRead,
    PolicySet,
    SimulateRequest,
    SimulateResult,
)
from pilothouse.core.inputs import IsoDateTime
from pilothouse.deps import Caller, Session, get_db

router = APIRouter(prefix="/services", tags=["autoscaling"])

EnvQuery = Query(default=None, description="Environment name or id, when the name is ambiguous.")


@router.get(
    "/{ref}/scaling",
    response_model=PolicyRead,
    summary="A service's scaling policy, and its last decision",
)
async def get_policy(
    ref: str, session: Session, caller: Caller, environment: str | None = EnvQuery
) -> PolicyRead:
    policy, svc = await service.get_policy(session, caller, ref, environment=environment)
    return await service.read(session, policy, svc)


@router.put(
    "/{ref}/scaling",
    response_model=PolicyRead,
    summary="Create or change a service's scaling policy (operator)",
    description="The fields given change; the others keep their value (a new policy starts "
    "from the seed's defaults). 422 names the field and the rule: min_instances 1-100 and <= "
    "max_instances, thresholds 0-1 with up > down, a custom metric needs metric_target.",
)
async def set_policy(
    ref: str,
    body: PolicySet,
    session: Session,
    caller: Caller,
    environment: str | None = EnvQuery,
) -> PolicyRead:
    policy, svc = await service.set_policy(session, caller, ref, body, environment=environment)
    return await service.read(session, policy, svc)


@router.delete(
    "/{ref}/scaling",
    status_code=204,
    summary="Remove a service's scaling policy (operator); its events are kept",
)
async def delete_policy(
    ref: str, session: Session, caller: Caller, environment: str | None = EnvQuery
) -> Response:
    await service.delete_policy(session, caller, ref, environment=environment)
    return Response(status_code=204)


@router.get(
    "/{ref}/scaling/events",
    response_model=list[EventRead],
    summary="A service's scaling events, newest first (kept 90 days)",
)
async def list_events(
    ref: str,
    session: Session,
    caller: Caller,
    environment: str | None = EnvQuery,
    since: IsoDateTime | None = Query(
        default=None, description="Only events from this time on (ISO 8601)."
    ),
    limit: int = Query(default=50, ge=1, le=1000, description="At most this many."),
) -> list[EventRead]:
    rows = await service.list_events(
        session, caller, ref, environment=environment, since=since, limit=limit
    )
    return [EventRead.model_validate(r) for r in rows]


@router.post(
    "/{ref}/scaling/simulate",
    response_model=SimulateResult,
    summary="What-if: replay stored metrics or a trace through a policy (records nothing)",
    description="Evaluates the saved policy (with `policy` fields overriding it, or the "
    "defaults for a service without one) every evaluation period from `start` to `end`, over "
    "the stored CPU/memory (or the policy's metric) or the given `trace`; returns the "
    "decisions it would have taken and the replica-hours they would have cost.",
)
async def simulate(
    ref: str, body: SimulateRequest, request: Request, session: Session, caller: Caller
) -> SimulateResult:
    return await service.simulate(session, get_db(request), caller, ref, body)
