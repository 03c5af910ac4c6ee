"""/api/v1 health routes and the public badges."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request, Response

from pilothouse.deps import Caller, Session, get_db
from pilothouse.errors import ERROR_RESPONSES
from pilothouse.healthchecks import service
from pilothouse.healthchecks.badges import badge
from pilothouse.healthchecks.schemas import (
    CheckRead,
    DeploymentMark,
    IncidentRead,
    MaintenanceCreate,
    MaintenanceRead,
    ServiceHealth,
    UptimeReport,
)

router = APIRouter(tags=["health"])
badges = APIRouter(tags=["health"])
EnvQuery = Query(default=None, description="Environment, when the name is ambiguous.")


@router.get("/services/{ref}/health", response_model=ServiceHealth, summary="Current health")
async def health(
    ref: str,
    session: Session,
    caller: Caller,
    environment: str | None = EnvQuery,
    include_all: bool = Query(
        default=False,
        alias="all",
        description="Also replicas that are no longer live (stopped, failed, starting...) and "
        "their latest checks; by default only running replicas are listed.",
    ),
) -> ServiceHealth:
    view = await service.health_of(
        session, caller, ref, environment=environment, include_all=include_all
    )
    return ServiceHealth(
        status=view.status,
        reasons=view.reasons,
        changed_at=view.changed_at,
        replicas=view.replicas,
        checks=[CheckRead.model_validate(c) for c in view.checks],
    )


def _this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


@router.get("/services/{ref}/uptime", response_model=UptimeReport, summary="Monthly uptime and SLA")
async def uptime(
    ref: str,
    session: Session,
    caller: Caller,
    month: str = Query(default_factory=_this_month, description="YYYY-MM; default this month."),
    environment: str | None = EnvQuery,
) -> UptimeReport:
    report, deployments, svc = await service.uptime_of(
        session, caller, ref, month, environment=environment
    )
    return UptimeReport(
        service=svc.name,
        month=month,
        start=report.start,
        end=report.end,
        minutes=report.minutes,
        downtime_minutes=report.downtime_minutes,
        stopped_minutes=report.stopped_minutes,
        uptime_percent=report.uptime_percent,
        sla_target=report.sla_target,
        sla_met=report.sla_met,
        checks=report.checks,
        p95_ms=report.p95_ms,
        avg_ms=report.avg_ms,
        outages=report.outages,
        deployments=[DeploymentMark.model_validate(d, from_attributes=True) for d in deployments],
    )


@router.post(
    "/services/{ref}/maintenance",
    response_model=MaintenanceRead,
    status_code=201,
    summary="Declare a maintenance window (operator): not counted as downtime",
)
async def add_maintenance(
    ref: str,
    body: MaintenanceCreate,
    session: Session,
    caller: Caller,
    environment: str | None = EnvQuery,
) -> MaintenanceRead:
    window = await service.add_maintenance(
        session,
        caller,
        ref,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
        environment=environment,
    )
    return MaintenanceRead.model_validate(window)


@router.get(
    "/services/{ref}/maintenance",
    response_model=list[MaintenanceRead],
    summary="Maintenance windows",
)
async def list_maintenance(
    ref: str, session: Session, caller: Caller, environment: str | None = EnvQuery
) -> list[MaintenanceRead]:
    rows = await service.list_maintenance(session, caller, ref, environment=environment)
    return [MaintenanceRead.model_validate(w) for w in rows]


@router.get("/incidents", response_model=list[IncidentRead], summary="Incidents, newest first")
async def incidents(
    session: Session,
    caller: Caller,
    service_ref: str | None = Query(
        default=None, alias="service", description="Only this service."
    ),
    open_only: bool = Query(default=False, alias="open", description="Only open incidents."),
) -> list[IncidentRead]:
    rows = await service.list_incidents(session, caller, service=service_ref, open_only=open_only)
    return [IncidentRead.model_validate(i).model_copy(update={"service": name}) for i, name in rows]


@badges.get(
    "/badge/{name}/{kind}.svg",
    summary="Public SVG badge: status or uptime (only services with health_check.public_badge)",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {}}, "description": "The badge."},
        404: ERROR_RESPONSES[404],
        413: ERROR_RESPONSES[413],
        422: ERROR_RESPONSES[422],
    },
)
async def badge_svg(name: str, kind: str, request: Request) -> Response:
    async with get_db(request).session(write=False) as session:
        label, value, color = await service.badge_values(session, name, kind, _this_month())
    return Response(
        badge(label, value, color),
        media_type="image/svg+xml",
        headers={"Cache-Control": "max-age=60"},
    )
