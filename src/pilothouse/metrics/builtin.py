"""Built-in samples, and the app-reported figures that fill the seed 000 health columns.

Three kinds of figures pilothouse has without being told:
- every running replica's CPU and memory, as the driver samples them (the supervisor keeps them
  on the replica row): `pilothouse_replica_cpu_percent`, `pilothouse_replica_memory_bytes`;
- every health target's last probe: `pilothouse_probe_success` (1/0) and
  `pilothouse_probe_duration_seconds`;
- when a replica's `/metrics` exposes them (scrape.py), its requests and errors counters, active
  connections, start time and resident memory. `pick_counters` recognises the common names;
  `window` turns the counter points of the last five minutes into an increase and an error
  rate (counter resets handled as Prometheus's `increase()` does). They are kept per replica in
  `replica_figures` and handed to the health monitor through the `replica_figures` hook, which
  fills `error_rate_5min`, `total_requests`, `active_connections`, `memory_usage_*`,
  `cpu_usage_percent` and `uptime_seconds` and makes the error-rate rules of derive.py live.

The decisions (`pick_counters`, `window`, `keep_points`, `health_columns`) are pure functions with
table tests; the database reads and writes are below them.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client.metrics_core import Metric

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.environments.models import Environment
from pilothouse.healthchecks.models import HealthCheck
from pilothouse.metrics.figures import ReplicaFigures
from pilothouse.metrics.samples import Sample
from pilothouse.replicas.models import Replica
from pilothouse.services.models import Service

#: The error rate is taken over this many seconds (seed 000 `error_rate_5min`).
WINDOW = 300.0

#: Sample names (with the `_total` suffix) counted as requests, as errors, and gauges read as
#: active connections; the first name found wins.
REQUEST_COUNTERS = (
    "http_requests_total",
    "http_server_requests_total",
    "http_server_requests_seconds_count",
    "http_request_duration_seconds_count",
    "requests_total",
)
ERROR_COUNTERS = (
    "http_request_errors_total",
    "http_errors_total",
    "http_server_errors_total",
    "errors_total",
)
ACTIVE_GAUGES = (
    "http_active_connections",
    "http_connections_active",
    "http_requests_in_progress",
    "http_requests_inflight",
    "http_server_active_requests",
    "active_connections",
)
STATUS_LABELS = ("code", "status", "status_code", "http_status")


@dataclass(frozen=True)
class Counters:
    """What one scrape said that pilothouse understands (None: not exposed)."""

    requests: float | None = None
    errors: float | None = None
    active: float | None = None
    started: float | None = None  # process start, seconds since the epoch
    resident_bytes: float | None = None


def pick_counters(families: Iterable[Metric]) -> Counters:
    """The requests/errors counters and friends among parsed metric families.

    Requests: the sum over label sets of the first known request counter. Errors: the first
    known error counter, else the requests whose status label is 5xx (when the request counter
    has a status label)."""
    return counters_of((s.name, s.labels, s.value) for f in families for s in f.samples)


#: Every sample name `counters_of` reads (the others can be left out of what it is given).
KNOWN_NAMES = frozenset(
    (
        *REQUEST_COUNTERS,
        *ERROR_COUNTERS,
        *ACTIVE_GAUGES,
        "process_start_time_seconds",
        "process_resident_memory_bytes",
    )
)


def counters_of(samples: Iterable[tuple[str, Mapping[str, str], float]]) -> Counters:
    """`pick_counters` over (name, labels, value) samples."""
    values: dict[str, float] = {}
    five_xx: dict[str, float] = {}
    labelled: set[str] = set()
    for name, labels, value in samples:
        if not math.isfinite(value):
            continue
        values[name] = values.get(name, 0.0) + value
        status = next((labels[k] for k in STATUS_LABELS if k in labels), None)
        if status is not None:
            labelled.add(name)
            if status.startswith("5"):
                five_xx[name] = five_xx.get(name, 0.0) + value
    request_name = next((n for n in REQUEST_COUNTERS if n in values), None)
    errors = next((values[n] for n in ERROR_COUNTERS if n in values), None)
    if errors is None and request_name is not None and request_name in labelled:
        errors = five_xx.get(request_name, 0.0)
    return Counters(
        requests=values[request_name] if request_name else None,
        errors=errors,
        active=next((values[n] for n in ACTIVE_GAUGES if n in values), None),
        started=values.get("process_start_time_seconds"),
        resident_bytes=values.get("process_resident_memory_bytes"),
    )


Point = Sequence[float]  # (epoch seconds, requests, errors)


def keep_points(points: Sequence[Point], now: float, window: float = WINDOW) -> list[list[float]]:
    """The points worth keeping: those inside the window and the last one at or before its
    start (the baseline of the increase), oldest first."""
    ordered = sorted((list(p) for p in points), key=lambda p: p[0])
    inside = [p for p in ordered if p[0] > now - window]
    before = [p for p in ordered if p[0] <= now - window]
    return ([before[-1]] if before else []) + inside


def _increase(values: Sequence[float]) -> float:
    """A counter's increase over consecutive values; a drop is a reset (counted from 0)."""
    total = 0.0
    for previous, current in itertools.pairwise(values):
        total += current - previous if current >= previous else current
    return total


@dataclass(frozen=True)
class Window:
    requests: int | None
    errors: int | None
    error_rate: float | None  # errors / requests over the window; None without requests


def window(points: Sequence[Point], now: float, span: float = WINDOW) -> Window:
    """Requests, errors and the error rate over the last `span` seconds of counter points."""
    kept = keep_points(points, now, span)
    if len(kept) < 2:
        return Window(None, None, None)
    requests = _increase([p[1] for p in kept])
    errors = _increase([p[2] for p in kept])
    rate = min(errors / requests, 1.0) if requests > 0 else None
    return Window(round(requests), round(errors), rate)


def health_columns(
    figures: ReplicaFigures | None,
    *,
    cpu_percent: float | None,
    memory_mb: float | None,
    memory_limit_mb: float | None,
    now: datetime,
) -> dict[str, Any]:
    """The seed 000 columns of a replica's health_checks row from its figures and the driver's
    sample (keys with no value are left out). Figures older than two windows are stale."""
    columns: dict[str, Any] = {}
    fresh = (
        figures is not None
        and figures.up
        and now - figures.scraped_at <= timedelta(seconds=2 * WINDOW)
    )
    if fresh and figures is not None:
        columns["total_requests"] = figures.total_requests
        columns["error_rate_5min"] = figures.error_rate_5min
        columns["active_connections"] = figures.active_connections
        columns["uptime_seconds"] = figures.uptime_seconds
        if memory_mb is None:
            memory_mb = figures.memory_usage_mb
    if cpu_percent is not None:
        columns["cpu_usage_percent"] = round(cpu_percent, 2)
    if memory_mb is not None:
        columns["memory_usage_mb"] = round(memory_mb, 2)
        if memory_limit_mb:
            columns["memory_usage_percent"] = round(100.0 * memory_mb / memory_limit_mb, 2)
    return {k: v for k, v in columns.items() if v is not None}


# -- the store ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scraped:
    """One replica's scrape outcome, as scrape.py hands it over."""

    replica_id: uuid.UUID
    service_id: uuid.UUID
    at: datetime
    up: bool
    detail: str | None
    counters: Counters


async def record_figures(db: Database, scraped: Sequence[Scraped]) -> None:
    """Update each replica's figures row with its latest scrape (one transaction)."""
    if not scraped:
        return
    async with db.session() as session:
        existing = {
            row.replica_id: row
            for row in await session.scalars(
                sa.select(ReplicaFigures)
                .where(ReplicaFigures.replica_id.in_([s.replica_id for s in scraped]))
                .with_for_update()
            )
        }
        for item in scraped:
            row = existing.get(item.replica_id)
            if row is None:
                row = ReplicaFigures(replica_id=item.replica_id, service_id=item.service_id)
                row.points = []
                session.add(row)
            apply_scrape(row, item)


async def prune_figures(db: Database, before: datetime) -> int:
    """Forget the figures of replicas not scraped since `before` (stopped or gone)."""
    async with db.session() as session:
        result = await session.execute(
            sa.delete(ReplicaFigures).where(ReplicaFigures.scraped_at < before)
        )
    return int(getattr(result, "rowcount", 0) or 0)


def apply_scrape(row: ReplicaFigures, item: Scraped) -> None:
    """Fold one scrape into a figures row (pure apart from the row's attributes)."""
    now = item.at.timestamp()
    row.scraped_at, row.up, row.detail = item.at, item.up, item.detail
    counters = item.counters
    if not item.up:
        return
    row.active_connections = None if counters.active is None else round(counters.active)
    row.uptime_seconds = None if counters.started is None else max(0, round(now - counters.started))
    row.memory_usage_mb = (
        None if counters.resident_bytes is None else counters.resident_bytes / 1024 / 1024
    )
    if counters.requests is None:
        row.total_requests = row.total_errors = None
        row.window_requests = row.window_errors = row.error_rate_5min = None
        row.points = []
        return
    errors = counters.errors or 0.0
    row.total_requests, row.total_errors = round(counters.requests), round(errors)
    points = keep_points([*(row.points or []), [now, counters.requests, errors]], now)
    row.points = points
    seen = window(points, now)
    row.window_requests, row.window_errors = seen.requests, seen.errors
    row.error_rate_5min = seen.error_rate


async def figures_of(
    db: Database, replica_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The health columns of each replica (the `replica_figures` hook the monitor calls):
    app-reported figures when fresh, CPU and memory from the driver's last sample. Extra keys
    starting with `_` carry the window's counts (for merging a service's replicas)."""
    if not replica_ids:
        return {}
    now = utcnow()
    async with db.session(write=False) as session:
        figures = {
            row.replica_id: row
            for row in await session.scalars(
                sa.select(ReplicaFigures).where(ReplicaFigures.replica_id.in_(replica_ids))
            )
        }
        replicas = list(
            await session.execute(
                sa.select(Replica.id, Replica.cpu_percent, Replica.memory_mb, Service.memory_mb)
                .join(Service, Service.id == Replica.service_id)
                .where(Replica.id.in_(replica_ids))
            )
        )
    out: dict[uuid.UUID, dict[str, Any]] = {}
    for replica_id, cpu, memory, limit in replicas:
        row = figures.get(replica_id)
        columns = health_columns(
            row, cpu_percent=cpu, memory_mb=memory, memory_limit_mb=limit, now=now
        )
        if "error_rate_5min" in columns and row is not None:
            columns["_window_requests"] = row.window_requests
            columns["_window_errors"] = row.window_errors
        out[replica_id] = columns
    return out


async def builtin_samples(db: Database, since: datetime, now: datetime) -> list[Sample]:
    """CPU and memory of every running replica, and every health target's probes since `since`."""
    samples: list[Sample] = []
    async with db.session(write=False) as session:
        replicas = list(
            await session.execute(
                sa.select(
                    Replica.id,
                    Replica.cpu_percent,
                    Replica.memory_mb,
                    Service.name,
                    Environment.name,
                )
                .join(Service, Service.id == Replica.service_id)
                .join(Environment, Environment.id == Service.environment_id)
                .where(Replica.status == "running")
            )
        )
        checks = list(
            await session.execute(
                sa.select(
                    HealthCheck.target,
                    HealthCheck.kind,
                    HealthCheck.ok,
                    HealthCheck.response_time_ms,
                    HealthCheck.timestamp,
                    Service.name,
                    Environment.name,
                )
                .outerjoin(Service, Service.id == HealthCheck.service_id)
                .outerjoin(Environment, Environment.id == HealthCheck.environment_id)
                .where(
                    HealthCheck.timestamp > since,
                    HealthCheck.timestamp <= now,
                    HealthCheck.kind != "service",
                )
            )
        )
    for replica_id, cpu, memory, service, environment in replicas:
        tags = {"environment": environment, "service": service, "replica": str(replica_id)}
        if cpu is not None:
            samples.append(
                Sample(
                    "pilothouse_replica_cpu_percent",
                    tags,
                    float(cpu),
                    now,
                    "percent",
                    "infrastructure",
                )
            )
        if memory is not None:
            samples.append(
                Sample(
                    "pilothouse_replica_memory_bytes",
                    tags,
                    float(memory) * 1024 * 1024,
                    now,
                    "bytes",
                    "infrastructure",
                )
            )
    for target, kind, ok, latency, at, service, environment in checks:
        tags = {"target": target, "kind": kind}
        if service:
            tags["service"] = service
        if environment:
            tags["environment"] = environment
        samples.append(
            Sample("pilothouse_probe_success", tags, 1.0 if ok else 0.0, at, "", "infrastructure")
        )
        if latency is not None:
            samples.append(
                Sample(
                    "pilothouse_probe_duration_seconds",
                    tags,
                    latency / 1000.0,
                    at,
                    "seconds",
                    "infrastructure",
                )
            )
    return samples
