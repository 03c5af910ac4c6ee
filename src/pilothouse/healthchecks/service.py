"""Health reads for the API and CLI (status, uptime, incidents, maintenance) and the periodic
rollup / downtime / retention job."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import SYSTEM, Principal, require, visible
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.deployments.models import Deployment
from pilothouse.errors import NotFound, PilothouseError, ValidationFailed
from pilothouse.healthchecks import uptime
from pilothouse.healthchecks.models import (
    Downtime,
    HealthCheck,
    HealthRollup,
    HealthState,
    Incident,
    MaintenanceWindow,
    ProbeClaim,
)
from pilothouse.healthchecks.spec import parse as parse_spec
from pilothouse.history.models import StatusHistory
from pilothouse.metrics import alerting
from pilothouse.replicas.models import Replica
from pilothouse.services import service as services
from pilothouse.services.models import Service

RAW_RETENTION = timedelta(hours=24)
SLA_ALERT = "healthchecks.sla_alert"  # job slot: one SLA alert per service and month
ROLLUP_RETENTION = timedelta(days=90)


def outcome(check: HealthCheck) -> uptime.Outcome:
    """up / error (HTTP 5xx) / down (no answer) for the uptime rules. A service-level check
    that answered while the service was unhealthy (e.g. its declared database disconnected)
    counts as an error: answering is not being up."""
    unhealthy = check.kind == "service" and check.overall_status == "unhealthy"
    if check.ok and not unhealthy:
        return "up"
    if check.ok or (check.http_status is not None and check.http_status >= 500):
        return "error"
    return "down"


@dataclass
class HealthView:
    status: str
    reasons: list[str]
    changed_at: datetime | None
    replicas: list[dict[str, Any]]
    checks: list[HealthCheck]


async def health_of(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    *,
    environment: str | None = None,
    include_all: bool = False,
) -> HealthView:
    """The service's health. Replicas (and their checks): the live (running) ones, or with
    include_all every replica of the service (the newest 100)."""
    svc = await services.get_service(session, actor, ref, environment=environment)
    state = await session.get(HealthState, f"service:{svc.id}")
    if svc.status == "stopped":
        # Stopped on purpose: not probed, not down (its health states were reset at the stop).
        since = await _stopped_since(session, svc.id)
        state = HealthState(
            target=f"service:{svc.id}",
            status="stopped",
            reasons=["stopped with `pilothouse service stop`; `service start` brings it back"],
            changed_at=since,
        )
    query = sa.select(Replica).where(Replica.service_id == svc.id)
    if not include_all:
        query = query.where(Replica.status == "running")
    newest = query.order_by(Replica.created_at.desc(), Replica.id.desc()).limit(100)
    replicas = list(reversed((await session.scalars(newest)).all()))
    listed = {f"replica:{r.id}" for r in replicas}
    since = utcnow() - timedelta(minutes=10)
    rows = (
        await session.scalars(
            sa.select(HealthCheck)
            .where(
                sa.or_(
                    HealthCheck.service_id == svc.id,
                    HealthCheck.target.like(f"dep:{svc.environment_id}:%"),
                ),
                HealthCheck.timestamp >= since,
            )
            .order_by(HealthCheck.timestamp)
        )
    ).all()
    latest: dict[str, HealthCheck] = {}
    for row in rows:
        latest[row.target] = row
    return HealthView(
        status=state.status if state is not None else "unknown",
        reasons=list(state.reasons or []) if state else [],
        changed_at=state.changed_at if state else None,
        replicas=[
            {
                "id": str(r.id),
                "status": r.status,
                "health": r.health,
                "port": (r.ports or {}).get("http"),
            }
            for r in replicas
        ],
        checks=[
            c
            for k, c in sorted(latest.items())
            if not k.startswith("service:") and (not k.startswith("replica:") or k in listed)
        ],
    )


async def uptime_of(
    session: AsyncSession, actor: Principal, ref: str, month: str, *, environment: str | None = None
) -> tuple[uptime.Report, list[Deployment], Service]:
    """The month's report (month to date for the current month) and its deployments."""
    svc = await services.get_service(session, actor, ref, environment=environment)
    try:
        start, end = uptime.month_bounds(month)
    except ValueError as exc:
        raise ValidationFailed("month", str(exc)) from None
    now = utcnow()
    end = min(end, now)
    if end <= start:
        raise ValidationFailed("month", "is in the future")
    stored = [
        (d.started_at, d.ended_at)
        for d in await session.scalars(
            sa.select(Downtime).where(
                Downtime.service_id == svc.id, Downtime.ended_at > start, Downtime.started_at < end
            )
        )
    ]
    raw = (
        await session.scalars(
            sa.select(HealthCheck)
            .where(
                HealthCheck.target == f"service:{svc.id}",
                HealthCheck.timestamp >= max(start, now - RAW_RETENTION),
            )
            .order_by(HealthCheck.timestamp)
        )
    ).all()
    checks = [
        uptime.Check(c.timestamp, outcome(c), c.response_time_ms) for c in raw if c.timestamp < end
    ]
    fresh = uptime.downtime(checks, end)
    windows = [
        (w.starts_at, w.ends_at)
        for w in await session.scalars(
            sa.select(MaintenanceWindow).where(
                MaintenanceWindow.service_id == svc.id,
                MaintenanceWindow.ends_at > start,
                MaintenanceWindow.starts_at < end,
            )
        )
    ]
    stopped = uptime.stopped_intervals(await _status_changes(session, svc.id, start), start, end)
    rollups = (
        await session.scalars(
            sa.select(HealthRollup).where(
                HealthRollup.target == f"service:{svc.id}",
                HealthRollup.hour >= start,
                HealthRollup.hour < end,
            )
        )
    ).all()
    times = [c.response_ms for c in checks if c.response_ms is not None and c.outcome == "up"]
    p95s = [r.p95_ms for r in rollups if r.p95_ms is not None] + (
        [uptime.p95(times)] if times else []
    )
    # Hourly rollups keep p95 per hour; the month's p95 is reported as the highest hourly p95
    # (conservative), the average is weighted by check counts.
    weighted = [(r.avg_ms, r.count) for r in rollups if r.avg_ms is not None]
    total = sum(n for _, n in weighted) + len(times)
    avg = (sum(a * n for a, n in weighted) + sum(times)) / total if total else None
    sla = parse_spec(svc.health_check).sla_target
    report = uptime.summarize(
        start,
        end,
        stored + fresh,
        maintenance=windows,
        stopped=stopped,
        response_ms=times,
        checks=len(checks) + sum(r.count for r in rollups),
        sla_target=sla,
        p95_ms=max((p for p in p95s if p is not None), default=None),
    )
    report = uptime.Report(**{**report.__dict__, "avg_ms": avg})
    deployments = (
        await session.scalars(
            sa.select(Deployment)
            .where(
                Deployment.service_id == svc.id,
                Deployment.created_at >= start,
                Deployment.created_at < end,
            )
            .order_by(Deployment.created_at)
        )
    ).all()
    return report, list(deployments), svc


async def _status_changes(
    session: AsyncSession, service_id: uuid.UUID, since: datetime
) -> list[tuple[datetime, str]]:
    """The service's status changes from `since` on, after the last one before it, in order."""
    where = sa.and_(StatusHistory.entity_type == "service", StatusHistory.entity_id == service_id)
    before = await session.execute(
        sa.select(StatusHistory.changed_at, StatusHistory.to_status)
        .where(where, StatusHistory.changed_at < since)
        .order_by(StatusHistory.changed_at.desc())
        .limit(1)
    )
    after = await session.execute(
        sa.select(StatusHistory.changed_at, StatusHistory.to_status)
        .where(where, StatusHistory.changed_at >= since)
        .order_by(StatusHistory.changed_at)
    )
    return [(at, to) for at, to in [*before, *after]]


async def _stopped_since(session: AsyncSession, service_id: uuid.UUID) -> datetime | None:
    """When the service last went to `stopped`."""
    return await session.scalar(
        sa.select(sa.func.max(StatusHistory.changed_at)).where(
            StatusHistory.entity_type == "service",
            StatusHistory.entity_id == service_id,
            StatusHistory.to_status == "stopped",
        )
    )


async def service_stopped(session: AsyncSession, service_id: uuid.UUID, *, reason: str) -> None:
    """A service was stopped on purpose: its open incident ends (no recovery message: it did
    not recover) and its published health is forgotten, so a start begins from `unknown`
    rather than from the state it was stopped in. Its open metric incidents end too."""
    now = utcnow()
    incident = await session.scalar(
        sa.select(Incident)
        .where(Incident.service_id == service_id, Incident.ended_at.is_(None))
        .with_for_update()
    )
    if incident is not None:
        incident.ended_at = now
        incident.cause = f"{incident.cause} (ended: {reason})"[:2000]
    await alerting.service_stopped(session, service_id, now, reason=reason)
    await session.execute(
        sa.delete(HealthState)
        .where(HealthState.service_id == service_id)
        .execution_options(synchronize_session=False)
    )


async def add_maintenance(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    *,
    starts_at: datetime,
    ends_at: datetime,
    reason: str | None,
    environment: str | None = None,
) -> MaintenanceWindow:
    svc = await services.get_service(session, actor, ref, environment=environment)
    require(actor, "manage_services")
    if ends_at <= starts_at:
        raise ValidationFailed("ends_at", "must be after starts_at")
    window = MaintenanceWindow(
        service_id=svc.id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_by=actor.name,
    )
    session.add(window)
    await session.flush()
    audit.record(
        session,
        actor,
        "create",
        "maintenance_window",
        window.id,
        {"service": svc.name, "starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()},
    )
    return window


async def list_maintenance(
    session: AsyncSession, actor: Principal, ref: str, *, environment: str | None = None
) -> Sequence[MaintenanceWindow]:
    svc = await services.get_service(session, actor, ref, environment=environment)
    return (
        await session.scalars(
            sa.select(MaintenanceWindow)
            .where(MaintenanceWindow.service_id == svc.id)
            .order_by(MaintenanceWindow.starts_at)
        )
    ).all()


async def list_incidents(
    session: AsyncSession, actor: Principal, *, service: str | None = None, open_only: bool = False
) -> list[tuple[Incident, str]]:
    """Incidents newest first, each with its service's name."""
    query = (
        sa.select(Incident, Service.name)
        .join(Service, Service.id == Incident.service_id)
        .order_by(Incident.started_at.desc())
        .limit(200)
    )
    visible_ids = sa.select(Service.id).where(
        Service.deleted_at.is_(None),
        visible(actor, Service.owner_id, Service.environment_id),
    )
    query = query.where(Incident.service_id.in_(visible_ids))
    if service:
        svc = await services.get_service(session, actor, service)
        query = query.where(Incident.service_id == svc.id)
    if open_only:
        query = query.where(Incident.ended_at.is_(None))
    return [(incident, name) for incident, name in (await session.execute(query)).all()]


# -- the periodic job ---------------------------------------------------------------------


async def rollup_hour(db: Database, hour: datetime) -> int:
    """Aggregate one completed hour of raw checks per target (idempotent)."""
    end = hour + timedelta(hours=1)
    async with db.session() as session:
        done = set(
            await session.scalars(sa.select(HealthRollup.target).where(HealthRollup.hour == hour))
        )
        rows = (
            await session.execute(
                sa.select(
                    HealthCheck.target,
                    HealthCheck.service_id,
                    HealthCheck.overall_status,
                    HealthCheck.response_time_ms,
                ).where(HealthCheck.timestamp >= hour, HealthCheck.timestamp < end)
            )
        ).all()
        groups: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            if row.target not in done:
                groups[row.target].append(row)
        for target, items in groups.items():
            times = [r.response_time_ms for r in items if r.response_time_ms is not None]
            session.add(
                HealthRollup(
                    target=target,
                    hour=hour,
                    service_id=items[0].service_id,
                    count=len(items),
                    healthy=sum(r.overall_status == "healthy" for r in items),
                    degraded=sum(r.overall_status == "degraded" for r in items),
                    unhealthy=sum(r.overall_status == "unhealthy" for r in items),
                    avg_ms=sum(times) / len(times) if times else None,
                    p95_ms=uptime.p95(times),
                    max_ms=max(times) if times else None,
                )
            )
        return len(groups)


async def record_downtime(db: Database, now: datetime) -> int:
    """Find downtime in the last 24 h of service-level checks and keep it (replacing what this
    window found before), so monthly uptime survives the raw rows' 24 h retention."""
    window_start = now - RAW_RETENTION
    async with db.session() as session:
        rows = (
            await session.scalars(
                sa.select(HealthCheck)
                .where(HealthCheck.kind == "service", HealthCheck.timestamp >= window_start)
                .order_by(HealthCheck.timestamp)
            )
        ).all()
        by_service: dict[uuid.UUID, list[uptime.Check]] = defaultdict(list)
        for row in rows:
            if row.service_id is not None:
                by_service[row.service_id].append(
                    uptime.Check(row.timestamp, outcome(row), row.response_time_ms)
                )
        await session.execute(sa.delete(Downtime).where(Downtime.started_at >= window_start))
        count = 0
        for service_id, checks in by_service.items():
            for start, end in uptime.downtime(checks, now):
                session.add(
                    Downtime(service_id=service_id, started_at=start, ended_at=end, cause="checks")
                )
                count += 1
        return count


async def prune(db: Database, now: datetime) -> None:
    """Raw checks and claims older than 24 h, rollups older than 90 days."""
    async with db.session() as session:
        await session.execute(
            sa.delete(HealthCheck).where(HealthCheck.timestamp < now - RAW_RETENTION)
        )
        await session.execute(
            sa.delete(ProbeClaim).where(ProbeClaim.claimed_at < now - RAW_RETENTION)
        )
        await session.execute(
            sa.delete(HealthRollup).where(HealthRollup.hour < now - ROLLUP_RETENTION)
        )


async def maintain(db: Database, now: datetime | None = None) -> dict[str, int]:
    """The periodic job: roll up completed hours, keep downtime, prune old rows."""
    now = now or utcnow()
    current_hour = now.replace(minute=0, second=0, microsecond=0)
    rolled = 0
    for back in range(24, 0, -1):
        rolled += await rollup_hour(db, current_hour - timedelta(hours=back))
    found = await record_downtime(db, now)
    await prune(db, now)
    return {"rollups": rolled, "downtime": found}


async def sla_breaches(
    db: Database, now: datetime, leases: Leases | None = None
) -> list[tuple[Service, uptime.Report]]:
    """Services whose month-to-date uptime fell below their SLA target, once per month each
    (the month's alert is a slot claim: one worker, one message, however many run)."""
    month = now.strftime("%Y-%m")
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    leases = leases or Leases(db)
    alerted = await leases.claimed(SLA_ALERT, month_start)
    below = []
    async with db.session(write=False) as session:
        live = list(
            await session.scalars(
                sa.select(Service).where(Service.deleted_at.is_(None), Service.status == "running")
            )
        )
        for svc in live:
            if str(svc.id) in alerted:
                continue
            report, _, _ = await uptime_of(session, SYSTEM, str(svc.id), month)
            if not report.sla_met and report.checks:
                below.append((svc, report))
    return [
        (svc, report)
        for svc, report in below
        if await leases.claim_slot(SLA_ALERT, str(svc.id), month_start)
    ]


STATUS_COLORS = {"healthy": "#4c1", "degraded": "#dfb317", "unhealthy": "#e05d44"}


async def badge_values(
    session: AsyncSession, name: str, kind: str, month: str
) -> tuple[str, str, str]:
    """(label, value, color) of a public badge; NotFound unless the service opted in."""
    if kind not in ("uptime", "status"):
        raise NotFound("badge not found")
    try:
        svc = await services.get_service(session, SYSTEM, name)
    except PilothouseError:
        raise NotFound("badge not found") from None
    if not parse_spec(svc.health_check).public_badge:
        raise NotFound("badge not found")
    if kind == "status":
        view = await health_of(session, SYSTEM, str(svc.id))
        return "status", view.status, STATUS_COLORS.get(view.status, "#9f9f9f")
    report, _, _ = await uptime_of(session, SYSTEM, str(svc.id), month)
    return "uptime", f"{report.uptime_percent:.2f}%", "#4c1" if report.sla_met else "#e05d44"


async def hourly_rollups(
    session: AsyncSession, service_id: uuid.UUID, *, since: datetime
) -> dict[str, list[float | None]]:
    """The service's hourly rollups from `since` as chart columns (the caller checked that the
    actor may see the service): unix time, average and P95 response time (ms), uptime (%)."""
    rows = (
        await session.scalars(
            sa.select(HealthRollup)
            .where(HealthRollup.target == f"service:{service_id}", HealthRollup.hour >= since)
            .order_by(HealthRollup.hour)
        )
    ).all()
    return {
        "t": [r.hour.timestamp() for r in rows],
        "avg_ms": [r.avg_ms for r in rows],
        "p95_ms": [r.p95_ms for r in rows],
        "uptime": [100.0 * (r.count - r.unhealthy) / r.count if r.count else None for r in rows],
    }
