"""pilothouse on `/metrics`: its own state in the Prometheus text exposition format.

Read at scrape time from the store (nothing is kept in process memory, so every API process
answers the same), rendered by prometheus_client through a custom Collector (`StateCollector`):

| series | type | labels |
|---|---|---|
| `pilothouse_info` | gauge (1) | version |
| `pilothouse_deployments` | gauge | status (every status, 0 included) |
| `pilothouse_rollout_duration_seconds` | histogram | (finished deployments' durations) |
| `pilothouse_replicas` | gauge | environment, service, status |
| `pilothouse_probe_success` | gauge (1/0) | target, kind, service (last probe, 10 min) |
| `pilothouse_probe_duration_seconds` | gauge | target, kind, service |
| `pilothouse_service_health` | gauge (1 for the current) | service, status |
| `pilothouse_backup_last_success_timestamp_seconds` | gauge | target |
| `pilothouse_backup_age_seconds` | gauge | target (since the last completed backup) |
| `pilothouse_backup_size_bytes`, `pilothouse_backup_duration_seconds` | gauge | target (last) |
| `pilothouse_backups` | gauge | target, status |
| `pilothouse_incidents_open` | gauge | service (every running service, 0 included) |
| `pilothouse_queue_length`, `pilothouse_queue_oldest_age_seconds` | gauge | queue |
| `pilothouse_leases_expired`, `pilothouse_lease_overdue_seconds` | gauge | kind |

Who may read it (Settings): a client whose address is in `metrics_allow` (CIDRs; loopback by
default), or anyone sending `Authorization: Bearer <metrics_token>` when a token is set.
Others get 401 (a token is configured: send it) or 403 (address not allowed, no token set).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pilothouse import __version__
from pilothouse.backups.models import Backup, BackupTarget
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.deployments.models import DEPLOYMENT_STATUSES, Deployment
from pilothouse.environments.models import Environment
from pilothouse.errors import ErrorBody, Forbidden, Unauthorized
from pilothouse.healthchecks.models import HealthCheck, HealthState, Incident
from pilothouse.replicas.models import Replica
from pilothouse.services.models import Service

#: Rollout duration buckets (seconds): a quick restart to a long migration.
BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
#: A probe older than this is not reported (its target is gone or no longer probed).
PROBE_FRESH = timedelta(minutes=10)


@dataclass
class BackupFigures:
    last_success: datetime | None = None
    size_bytes: int | None = None
    duration_seconds: int | None = None
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass
class State:
    """What `/metrics` reports, read in one pass over the store."""

    now: datetime
    deployments: dict[str, int] = field(default_factory=dict)
    durations: list[tuple[float, int]] = field(default_factory=list)  # (seconds, how many)
    replicas: dict[tuple[str, str, str], int] = field(default_factory=dict)
    probes: list[tuple[str, str, str, bool, float | None]] = field(default_factory=list)
    health: dict[str, str] = field(default_factory=dict)  # service name -> status
    backups: dict[str, BackupFigures] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    queues: dict[str, tuple[int, float]] = field(default_factory=dict)  # length, oldest age
    leases: dict[str, tuple[int, float]] = field(default_factory=dict)  # expired, overdue


async def snapshot(db: Database, now: datetime | None = None) -> State:
    """Read the state `/metrics` reports (read-only, one session)."""
    now = now or utcnow()
    state = State(now=now)
    async with db.session(write=False) as session:
        state.deployments = {s: 0 for s in DEPLOYMENT_STATUSES}
        for status, count in await session.execute(
            sa.select(Deployment.status, sa.func.count()).group_by(Deployment.status)
        ):
            state.deployments[status] = count
        state.durations = [
            (float(seconds or 0), count)
            for seconds, count in await session.execute(
                sa.select(Deployment.duration_seconds, sa.func.count())
                .where(
                    Deployment.duration_seconds.is_not(None),
                    Deployment.status.in_(("success", "failed", "rolled_back")),
                )
                .group_by(Deployment.duration_seconds)
            )
        ]
        live = (Service.deleted_at.is_(None),)
        for env, svc, status, count in await session.execute(
            sa.select(Environment.name, Service.name, Replica.status, sa.func.count())
            .join(Service, Service.id == Replica.service_id)
            .join(Environment, Environment.id == Service.environment_id)
            .where(*live)
            .group_by(Environment.name, Service.name, Replica.status)
        ):
            state.replicas[(env, svc, status)] = count
        latest = (
            sa.select(HealthCheck.target, sa.func.max(HealthCheck.timestamp).label("at"))
            .where(HealthCheck.timestamp >= now - PROBE_FRESH, HealthCheck.kind != "service")
            .group_by(HealthCheck.target)
            .subquery()
        )
        for target, kind, svc, ok, latency in await session.execute(
            sa.select(
                HealthCheck.target,
                HealthCheck.kind,
                Service.name,
                HealthCheck.ok,
                HealthCheck.response_time_ms,
            )
            .join(
                latest,
                sa.and_(
                    HealthCheck.target == latest.c.target, HealthCheck.timestamp == latest.c.at
                ),
            )
            .outerjoin(Service, Service.id == HealthCheck.service_id)
        ):
            state.probes.append((target, kind, svc or "", bool(ok), latency))
        services = {
            s.id: s.name
            for s in await session.scalars(
                sa.select(Service).where(*live, Service.status == "running")
            )
        }
        keyed = {f"service:{i}": n for i, n in services.items()}
        for target, status in await session.execute(
            sa.select(HealthState.target, HealthState.status).where(
                HealthState.target.in_(list(keyed))
            )
        ):
            state.health[keyed[target]] = status
        state.incidents = {name: 0 for name in services.values()}
        for service_id, count in await session.execute(
            sa.select(Incident.service_id, sa.func.count())
            .where(Incident.ended_at.is_(None))
            .group_by(Incident.service_id)
        ):
            if service_id in services:
                state.incidents[services[service_id]] = count
        targets = {
            t.id: t.name
            for t in await session.scalars(
                sa.select(BackupTarget).where(BackupTarget.deleted_at.is_(None))
            )
        }
        state.backups = {name: BackupFigures() for name in targets.values()}
        for target_id, status, count in await session.execute(
            sa.select(Backup.target_id, Backup.status, sa.func.count()).group_by(
                Backup.target_id, Backup.status
            )
        ):
            if target_id in targets:
                state.backups[targets[target_id]].by_status[status] = count
        last = (
            sa.select(Backup.target_id, sa.func.max(Backup.completed_at).label("at"))
            .where(Backup.status == "completed", Backup.completed_at.is_not(None))
            .group_by(Backup.target_id)
            .subquery()
        )
        for target_id, completed, size, duration in await session.execute(
            sa.select(
                Backup.target_id, Backup.completed_at, Backup.size_bytes, Backup.duration_seconds
            ).join(
                last,
                sa.and_(Backup.target_id == last.c.target_id, Backup.completed_at == last.c.at),
            )
        ):
            if target_id in targets:
                figures = state.backups[targets[target_id]]
                figures.last_success, figures.size_bytes = completed, size
                figures.duration_seconds = duration
        pending = (
            await session.execute(
                sa.select(sa.func.count(), sa.func.min(Deployment.created_at)).where(
                    Deployment.status == "pending"
                )
            )
        ).one()
        state.queues["deployments"] = (
            pending[0],
            (now - pending[1]).total_seconds() if pending[1] is not None else 0.0,
        )
        for kind, model in (("deployment", Deployment), ("backup", Backup)):
            expired = (
                await session.execute(
                    sa.select(sa.func.count(), sa.func.min(model.lease_expires_at)).where(
                        model.lease_owner.is_not(None), model.lease_expires_at < now
                    )
                )
            ).one()
            overdue = (now - expired[1]).total_seconds() if expired[1] is not None else 0.0
            state.leases[kind] = (expired[0], overdue)
    return state


def histogram(
    durations: Iterable[tuple[float, int]], buckets: tuple[float, ...] = BUCKETS
) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets (`le` label, count) and the sum, from (value, how many) pairs."""
    pairs = list(durations)
    out = [(repr(b), float(sum(n for v, n in pairs if v <= b))) for b in buckets]
    out.append(("+Inf", float(sum(n for _, n in pairs))))
    return out, float(sum(v * n for v, n in pairs))


class StateCollector(Collector):
    """Yields the metric families of one `State` (prometheus_client's custom collector)."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        info = GaugeMetricFamily("pilothouse_info", "pilothouse's version.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        deployments = GaugeMetricFamily(
            "pilothouse_deployments", "Deployments by status.", labels=["status"]
        )
        for status, count in sorted(s.deployments.items()):
            deployments.add_metric([status], count)
        yield deployments
        buckets, total = histogram(s.durations)
        yield HistogramMetricFamily(
            "pilothouse_rollout_duration_seconds",
            "Duration of finished deployments (success, failed, rolled back).",
            buckets=buckets,
            sum_value=total,
        )
        replicas = GaugeMetricFamily(
            "pilothouse_replicas",
            "Replicas by environment, service and status.",
            labels=["environment", "service", "status"],
        )
        for (env, svc, status), count in sorted(s.replicas.items()):
            replicas.add_metric([env, svc, status], count)
        yield replicas
        labels = ["target", "kind", "service"]
        success = GaugeMetricFamily(
            "pilothouse_probe_success", "1 when the last probe passed.", labels=labels
        )
        latency = GaugeMetricFamily(
            "pilothouse_probe_duration_seconds", "Latency of the last probe.", labels=labels
        )
        for target, kind, svc, ok, ms in sorted(s.probes):
            success.add_metric([target, kind, svc], 1.0 if ok else 0.0)
            if ms is not None:
                latency.add_metric([target, kind, svc], ms / 1000.0)
        yield success
        yield latency
        health = GaugeMetricFamily(
            "pilothouse_service_health",
            "1 for the service's published health status.",
            labels=["service", "status"],
        )
        for svc, status in sorted(s.health.items()):
            for candidate in ("healthy", "degraded", "unhealthy"):
                health.add_metric([svc, candidate], 1.0 if candidate == status else 0.0)
        yield health
        yield from self._backups()
        incidents = GaugeMetricFamily(
            "pilothouse_incidents_open", "Open incidents by service.", labels=["service"]
        )
        for svc, count in sorted(s.incidents.items()):
            incidents.add_metric([svc], count)
        yield incidents
        length = GaugeMetricFamily(
            "pilothouse_queue_length", "Work waiting to be picked up.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "pilothouse_queue_oldest_age_seconds",
            "Age of the oldest waiting item (0 when none waits).",
            labels=["queue"],
        )
        for queue, (count, age) in sorted(s.queues.items()):
            length.add_metric([queue], count)
            oldest.add_metric([queue], age)
        yield length
        yield oldest
        expired = GaugeMetricFamily(
            "pilothouse_leases_expired",
            "Leases past their expiry, not yet taken over.",
            labels=["kind"],
        )
        overdue = GaugeMetricFamily(
            "pilothouse_lease_overdue_seconds",
            "How long the most overdue expired lease has waited.",
            labels=["kind"],
        )
        for kind, (count, seconds) in sorted(s.leases.items()):
            expired.add_metric([kind], count)
            overdue.add_metric([kind], seconds)
        yield expired
        yield overdue

    def _backups(self) -> Iterator[Metric]:
        s, labels = self.state, ["target"]
        last = GaugeMetricFamily(
            "pilothouse_backup_last_success_timestamp_seconds",
            "When the last completed backup finished (Unix time).",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "pilothouse_backup_age_seconds",
            "Seconds since the last completed backup.",
            labels=labels,
        )
        size = GaugeMetricFamily(
            "pilothouse_backup_size_bytes", "Size of the last completed backup.", labels=labels
        )
        duration = GaugeMetricFamily(
            "pilothouse_backup_duration_seconds",
            "Duration of the last completed backup.",
            labels=labels,
        )
        counts = GaugeMetricFamily(
            "pilothouse_backups", "Backups kept, by target and status.", labels=["target", "status"]
        )
        for name, f in sorted(s.backups.items()):
            if f.last_success is not None:
                last.add_metric([name], f.last_success.timestamp())
                age.add_metric([name], (s.now - f.last_success).total_seconds())
            if f.size_bytes is not None:
                size.add_metric([name], f.size_bytes)
            if f.duration_seconds is not None:
                duration.add_metric([name], f.duration_seconds)
            for status, count in sorted(f.by_status.items()):
                counts.add_metric([name, status], count)
        yield from (last, age, size, duration, counts)


def render(state: State) -> bytes:
    """The exposition text of one state."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(state))
    return generate_latest(registry)


def allowed(settings: Settings, client: str | None, authorization: str | None) -> None:
    """Let the request through, or raise 401/403 (see the module docstring)."""
    token = settings.metrics_token
    if token and authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return
    if client:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            address = None
        if address is not None and any(address in net for net in settings.metrics_allow):
            return
    if token:
        raise Unauthorized("/metrics needs `Authorization: Bearer <PILOTHOUSE_METRICS_TOKEN>`")
    raise Forbidden(
        f"address {client or 'unknown'} may not read /metrics: add it to PILOTHOUSE_METRICS_ALLOW "
        "or set PILOTHOUSE_METRICS_TOKEN"
    )


router = APIRouter(tags=["meta"])


@router.get(
    "/metrics",
    summary="pilothouse's own state in the Prometheus text format (allow-listed address or token)",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The exposition text."},
        401: {"model": ErrorBody, "description": "A metrics token is set: send it."},
        403: {"model": ErrorBody, "description": "The address is not allow-listed."},
    },
)
async def metrics(request: Request) -> Response:
    """Deployments, rollouts, replicas, probes, backups, incidents and lease lag, for Prometheus."""
    settings: Settings = request.app.state.settings
    allowed(
        settings,
        request.client.host if request.client else None,
        request.headers.get("authorization"),
    )
    state = await snapshot(request.app.state.db)
    return Response(render(state), media_type=CONTENT_TYPE_LATEST)
