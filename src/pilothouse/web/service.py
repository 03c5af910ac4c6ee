"""The dashboard's reads that no single API route makes: the overview grid in a fixed number of
queries whatever the page size, and the public status page (no principal: opt-in only).

Views call these and the capabilities' own service functions; no view runs SQL. Visibility is the
API's: `access.visible` and the capabilities' own checks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from ddsketch import DDSketch
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, visible
from pilothouse.artifacts.models import Artifact
from pilothouse.audit import service as audit
from pilothouse.backups import service as backups
from pilothouse.core.clock import utcnow
from pilothouse.deployments.models import ACTIVE_STATUSES, Deployment
from pilothouse.environments.models import Environment
from pilothouse.errors import NotFound
from pilothouse.healthchecks import service as health
from pilothouse.healthchecks.models import Downtime, HealthState, Incident
from pilothouse.metrics import query as metric_query
from pilothouse.metrics import sketch as sketches
from pilothouse.metrics.models import MetricRollup
from pilothouse.replicas.models import Replica
from pilothouse.services import service as services
from pilothouse.services.models import Service
from pilothouse.web import present
from pilothouse.web.models import PublicStatus


@dataclass
class Cell:
    """One service in the overview grid."""

    id: uuid.UUID
    name: str
    environment: str
    status: str  # present.GRID_STATUSES
    release: str | None = None
    ready: int = 0
    target: int = 0
    uptime: float | None = None
    open_incidents: int = 0
    last_backup: datetime | None = None


@dataclass
class Overview:
    """One page of the grid, and what its filters may choose from."""

    cells: list[Cell]
    total: int
    page: int
    pages: int
    environments: list[str]
    counts: dict[str, int] = field(default_factory=dict)  # status -> services (all pages)


async def overview(
    session: AsyncSession,
    actor: Principal,
    *,
    environment: str | None = None,
    status: str | None = None,
    q: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Overview:
    """Every service the actor can see, by environment then name, filtered, one page of it
    filled in. Eight queries however many services: the rows, their health and rollouts (for the
    status filter, in one query), then releases, replicas, downtime, incidents and backups of
    the page only."""
    now = utcnow()
    envs = (
        await session.execute(
            sa.select(Environment.id, Environment.name)
            .where(
                Environment.deleted_at.is_(None),
                visible(actor, Environment.owner_id, Environment.id),
            )
            .order_by(Environment.name)
        )
    ).all()
    env_names = {env_id: name for env_id, name in envs}
    health = (
        sa.select(HealthState.status)
        .where(HealthState.service_id == Service.id, HealthState.target.like("service:%"))
        .limit(1)
        .correlate(Service)
        .scalar_subquery()
    )
    deploying = (
        sa.exists()
        .where(Deployment.service_id == Service.id, Deployment.status.in_(ACTIVE_STATUSES))
        .correlate(Service)
    )
    query = (
        sa.select(
            Service.id,
            Service.name,
            Service.environment_id,
            Service.status,
            health.label("health"),
            deploying.label("deploying"),
        )
        .join(Environment, Environment.id == Service.environment_id)
        .where(
            Service.deleted_at.is_(None),
            Environment.deleted_at.is_(None),
            visible(actor, Service.owner_id, Service.environment_id),
        )
        .order_by(Environment.name, Service.name)
    )
    if environment:
        query = query.where(Environment.name == environment)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Service.name.like(f"%{escaped}%", escape="\\"))
    rows = (await session.execute(query)).all()
    cells = [
        Cell(
            id=r.id,
            name=r.name,
            environment=env_names.get(r.environment_id, "?"),
            status=present.grid_status(r.status, r.health, bool(r.deploying)),
        )
        for r in rows
    ]
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    if status:
        cells = [c for c in cells if c.status == status]
    total = len(cells)
    n_pages = present.pages(total, per_page)
    page = min(max(1, page), n_pages)
    shown = cells[(page - 1) * per_page : page * per_page]
    env_of = {r.id: r.environment_id for r in rows}
    await _fill(session, actor, shown, env_of, now)
    return Overview(shown, total, page, n_pages, [name for _, name in envs], counts)


async def _fill(
    session: AsyncSession,
    actor: Principal,
    cells: list[Cell],
    env_of: dict[uuid.UUID, uuid.UUID],
    now: datetime,
) -> None:
    """Releases, replicas, uptime this month, open incidents and backups of one page."""
    if not cells:
        return
    ids = [c.id for c in cells]
    by_id = {c.id: c for c in cells}
    for svc_id, version in await session.execute(
        sa.select(Artifact.service_id, Artifact.version).where(
            Artifact.service_id.in_(ids), Artifact.deployed.is_(True)
        )
    ):
        by_id[svc_id].release = version
    targets = await session.execute(
        sa.select(Service.id, Service.target_replicas).where(Service.id.in_(ids))
    )
    for svc_id, target in targets:
        by_id[svc_id].target = target
    for svc_id, ready in await session.execute(
        sa.select(Replica.service_id, sa.func.count())
        .where(Replica.service_id.in_(ids), Replica.status == "running")
        .group_by(Replica.service_id)
    ):
        by_id[svc_id].ready = ready
    start = present.month_start(now)
    spans: dict[uuid.UUID, list[tuple[datetime, datetime]]] = {i: [] for i in ids}
    for svc_id, a, b in await session.execute(
        sa.select(Downtime.service_id, Downtime.started_at, Downtime.ended_at).where(
            Downtime.service_id.in_(ids), Downtime.ended_at > start
        )
    ):
        spans[svc_id].append((a, b))
    # Open incidents count as down until now (their downtime row is written when they close).
    for svc_id, a in await session.execute(
        sa.select(Incident.service_id, Incident.started_at).where(
            Incident.service_id.in_(ids), Incident.ended_at.is_(None)
        )
    ):
        spans[svc_id].append((a, now))
        by_id[svc_id].open_incidents += 1
    for cell in cells:
        cell.uptime = present.uptime_percent(spans[cell.id], start, now)
    last = await backups.last_completed(session, actor, list({env_of[i] for i in ids}))
    for cell in cells:
        cell.last_backup = last.get(env_of[cell.id])


# -- public status pages ---------------------------------------------------------------------


async def set_public(session: AsyncSession, actor: Principal, ref: str, public: bool) -> Service:
    """Opt a service's status page in or out of public view (operator; audited)."""
    require(actor, "manage_services")
    svc = await services.get_service(session, actor, ref)
    row = await session.get(PublicStatus, svc.id)
    if public and row is None:
        session.add(PublicStatus(service_id=svc.id, created_by=actor.name, created_at=utcnow()))
    elif not public and row is not None:
        await session.delete(row)
    else:
        return svc
    audit.record(session, actor, "update", "service", svc.id, {"public_status": public})
    return svc


async def is_public(session: AsyncSession, service_id: uuid.UUID) -> bool:
    return await session.get(PublicStatus, service_id) is not None


@dataclass
class StatusPage:
    """What a public status page shows: nothing but status, uptime and incident history."""

    name: str
    environment: str
    status: str
    bars: list[present.DayBar]
    uptime_90d: float | None
    incidents: Sequence[Incident]


async def status_page(session: AsyncSession, environment: str, name: str) -> StatusPage:
    """A public service's status page; a service that did not opt in is NotFound (as is one
    that does not exist: the page does not reveal which)."""
    found = (
        await session.execute(
            sa.select(Service, Environment.name)
            .join(Environment, Environment.id == Service.environment_id)
            .join(PublicStatus, PublicStatus.service_id == Service.id)
            .where(
                Service.name == name,
                Environment.name == environment,
                Service.deleted_at.is_(None),
                Environment.deleted_at.is_(None),
            )
        )
    ).first()
    if found is None:
        raise NotFound(f"no public status page {environment}/{name}")
    svc, env_name = found
    now = utcnow()
    since = now - timedelta(days=90)
    spans = await _downtime(session, svc.id, since, now)
    incidents = (
        await session.scalars(
            sa.select(Incident)
            .where(Incident.service_id == svc.id, Incident.started_at >= since)
            .order_by(Incident.started_at.desc())
            .limit(50)
        )
    ).all()
    state = await session.get(HealthState, f"service:{svc.id}")
    deploying = (
        await session.scalar(
            sa.select(sa.func.count())
            .select_from(Deployment)
            .where(Deployment.service_id == svc.id, Deployment.status.in_(ACTIVE_STATUSES))
        )
    ) or 0
    status = present.grid_status(svc.status, state.status if state else None, deploying > 0)
    return StatusPage(
        name=svc.name,
        environment=env_name,
        status=status,
        bars=present.day_bars(spans, svc.created_at, now),
        uptime_90d=present.uptime_percent(spans, max(since, svc.created_at), now),
        incidents=incidents,
    )


async def _downtime(
    session: AsyncSession, service_id: uuid.UUID, since: datetime, now: datetime
) -> list[tuple[datetime, datetime]]:
    """Recorded downtime after `since`, and open incidents as down until `now` (their downtime
    row is written when they close): what the status page and the uptime chart count."""
    spans = [
        (a, b)
        for a, b in await session.execute(
            sa.select(Downtime.started_at, Downtime.ended_at).where(
                Downtime.service_id == service_id, Downtime.ended_at > since
            )
        )
    ]
    spans += [
        (a, now)
        for (a,) in await session.execute(
            sa.select(Incident.started_at).where(
                Incident.service_id == service_id, Incident.ended_at.is_(None)
            )
        )
    ]
    return spans


async def uptime_days(session: AsyncSession, svc: Service, days: int = 30) -> list[present.DayBar]:
    """The service's last `days` days of uptime (oldest first), as its status page counts them
    (the caller checked that the actor may see the service)."""
    now = utcnow()
    spans = await _downtime(session, svc.id, now - timedelta(days=days), now)
    return present.day_bars(spans, svc.created_at, now, days=days)


#: The metric whose hourly sketches give the response time's P50 (the replicas' and the
#: service URL's probes; dependencies and TLS handshakes are not the service's responses).
PROBE_METRIC = "pilothouse_probe_duration_seconds"
RESPONSE_TARGETS = ("replica:", "url:")


async def response_chart(
    session: AsyncSession, svc: Service, environment: str, since: datetime
) -> dict[str, list[float | None]]:
    """Chart columns of the service's hours since `since` (the caller checked that the actor may
    see the service): unix time, average and P95 (the health rollups), P50 (the metric store's
    hourly sketches of the probes, merged per hour; None for an hour it has not rolled up),
    and uptime (%)."""
    points = await health.hourly_rollups(session, svc.id, since=since)
    p50 = await _hourly_p50(session, svc.name, environment, since)
    points["p50_ms"] = [p50.get(int(t)) if t is not None else None for t in points["t"]]
    return points


async def _hourly_p50(
    session: AsyncSession, name: str, environment: str, since: datetime
) -> dict[int, float]:
    """Epoch hour -> P50 of the service's probe durations (ms), from the hourly rollups of the
    metric store (read only): one sketch per series and hour, merged across series."""
    found = await metric_query.matching_series(
        session, PROBE_METRIC, {"service": name, "environment": environment}, None
    )
    ids = [s.id for s in found if str(s.tags.get("target", "")).startswith(RESPONSE_TARGETS)]
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(MetricRollup.bucket, MetricRollup.sketch).where(
            MetricRollup.series_id.in_(ids),
            MetricRollup.resolution == 3600,
            MetricRollup.bucket >= int(since.timestamp()),
        )
    )
    merged: dict[int, DDSketch] = {}
    for bucket, stored in rows:
        part = sketches.loads(stored)
        if bucket in merged:
            merged[bucket].merge(part)
        else:
            merged[bucket] = part
    out = {}
    for bucket, sketch in merged.items():
        value = sketch.get_quantile_value(0.5)
        if value is not None:
            out[int(bucket)] = round(value * 1000.0, 3)
    return out
