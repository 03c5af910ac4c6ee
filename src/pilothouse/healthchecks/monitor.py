"""The health monitor (runs in the worker; the schedule ticks every 0.5 s).

Targets come from the database: every running replica (HTTP or TCP on its port, every
`replica_interval` s, default 30), each service's public URL (every `interval` s, default 60) and
the dependencies declared in its environment's config (`database_url`, `redis_url`); a stopped
service (`service stop`) has none, and what probes in flight when it stopped saw is dropped.
Each target runs once per time slot at a fixed per-target offset (jitter), claimed in
probe_claims so it runs once however many workers share the database, with at most
`concurrency` probes at a time.
Results become health_checks rows; replica and service health is derived (derive.py), damped, and
each published change is a status_history row. A service leaving healthy opens an incident with
one alert, reminders every `reminder_minutes` while it lasts, and one recovery message.

While the store is unreachable the monitor keeps probing the targets it last read (unclaimed:
nobody can arbitrate), keeps its evaluated results in memory (at most `buffer` results; the
oldest are dropped beyond, and counted) and writes them, with the times they were taken, when the
store is back, so the outage shows in uptime and incidents. A service leaving healthy meanwhile is
alerted at once from memory, through the channels of the last good read; the incident written
later does not alert again.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import system_actor
from pilothouse.alerts.service import Endpoint, active_channels, broadcast
from pilothouse.core import probes
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.leases import WORKER_ID, Leases
from pilothouse.core.logging import get_logger, mask_text
from pilothouse.core.store import unreachable
from pilothouse.environments.models import Environment
from pilothouse.healthchecks.derive import (
    Damper,
    Dependency,
    Observation,
    Status,
    Thresholds,
    certificate_warning,
    damp,
    dependency_status,
    derive,
    merge_figures,
)
from pilothouse.healthchecks.incidents import incident_action, reminder_due
from pilothouse.healthchecks.models import (
    HealthCheck,
    HealthState,
    Incident,
    ProbeClaim,
)
from pilothouse.healthchecks.spec import HealthCheckSpec
from pilothouse.healthchecks.spec import parse as parse_spec
from pilothouse.history import service as history
from pilothouse.replicas.models import Replica
from pilothouse.services.models import Service
from pilothouse.variables.service import dependency_config

log = get_logger("pilothouse.monitor")
MONITOR = system_actor("monitor")


@dataclass(frozen=True)
class Target:
    key: str
    kind: str  # http, tcp, postgres, redis
    interval: float
    timeout: float
    spec: dict[str, Any]
    service_ids: tuple[uuid.UUID, ...]
    environment_id: uuid.UUID | None = None
    replica_id: uuid.UUID | None = None
    role: str = "replica"  # replica, url, database, redis


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    environment_id: uuid.UUID
    thresholds: Thresholds
    replicas: set[uuid.UUID]


@dataclass(frozen=True)
class Latest:
    ok: bool
    latency_ms: float | None
    status_code: int | None
    detail: str
    at: datetime


Raw = tuple[str, uuid.UUID, uuid.UUID, Status, list[str], Thresholds]
Change = tuple[str, uuid.UUID, uuid.UUID, str, str, list[str]]


@dataclass
class Evaluated:
    """One flush's rows and damping inputs, waiting to be stored (at: when evaluated)."""

    rows: list[dict[str, Any]]
    raws: dict[str, Raw]
    at: datetime


@dataclass
class MonitorSettings:
    tick: float = 0.5
    flush: float = 0.5
    refresh: float = 5.0
    concurrency: int = 200
    reminder_minutes: float = 30.0
    buffer: int = 10_000  # results kept in memory while the store is unreachable
    store_retry: float = 5.0  # seconds between attempts to reach the store while it is away
    worker: str = WORKER_ID
    cert_warn_days: int = 14  # a certificate expiring sooner makes its service degraded
    tls_ca_file: str | None = None  # extra CA certificates the https and TLS probes trust


def health_spec(service: Service) -> HealthCheckSpec:
    return parse_spec(service.health_check)


def thresholds_for(service: Service, spec: HealthCheckSpec | None = None) -> Thresholds:
    return Thresholds(**(spec or health_spec(service)).thresholds.model_dump())


def offset(key: str, interval: float) -> float:
    """A stable offset inside the interval for each target (spreads probes: jitter)."""
    return (zlib.crc32(key.encode()) % max(1, int(interval * 1000))) / 1000


#: A source of app-reported figures per replica (metrics/builtin.py `figures_of`): the seed 000
#: columns of its health_checks rows (`error_rate_5min`, `total_requests`, ...), keys starting
#: with `_` being for merging only.
FiguresSource = Callable[
    [Database, Sequence[uuid.UUID]], Awaitable[dict[uuid.UUID, dict[str, Any]]]
]


class Monitor:
    def __init__(
        self,
        db: Database,
        settings: MonitorSettings | None = None,
        *,
        figures: list[FiguresSource] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings or MonitorSettings()
        # Read at every flush: a capability registered later may still append its source.
        self.figure_sources: list[FiguresSource] = figures if figures is not None else []
        self.figures: dict[uuid.UUID, dict[str, Any]] = {}
        self.leases = Leases(db, owner=self.settings.worker)
        self.targets: list[Target] = []
        self.last_slot: dict[str, int] = {}
        self.semaphore = asyncio.Semaphore(self.settings.concurrency)
        self._tls = ssl.create_default_context()
        if self.settings.tls_ca_file:
            self._tls.load_verify_locations(cafile=self.settings.tls_ca_file)
        self.tasks: set[asyncio.Task[None]] = set()
        self.lags: list[float] = []  # seconds between due time and start (for benchmarks)
        self.probed = 0
        self._refreshed = -1e9
        self.service_info: dict[uuid.UUID, ServiceInfo] = {}
        self.pending: list[tuple[Target, probes.ProbeResult, datetime]] = []
        self.latest: dict[str, Latest] = {}
        self._flushed = 0.0
        self._flush_lock = asyncio.Lock()
        # While the store is away: evaluated flushes waiting to be stored (oldest first), how
        # many results they hold and how many were dropped; the damped states as last known,
        # the channels of the last good read, and alerts sent from memory, per service.
        self.backlog: deque[Evaluated] = deque()
        self.buffered = 0
        self.dropped = 0
        self._away = False
        self._retry_at = 0.0
        self.dampers: dict[str, Damper] = {}
        self.channels: list[Endpoint] = []
        self.sent_away: dict[uuid.UUID, deque[str]] = {}

    # -- targets --------------------------------------------------------------------------

    async def collect_targets(self) -> list[Target]:
        async with self.db.session(write=False) as session:
            services = list(
                await session.scalars(
                    sa.select(Service).where(
                        Service.deleted_at.is_(None), Service.status == "running"
                    )
                )
            )
            replicas = list(
                await session.scalars(
                    sa.select(Replica).where(
                        Replica.status == "running",
                        Replica.service_id.in_([s.id for s in services]),
                    )
                )
            )
            envs = {
                e.id: e
                for e in await session.scalars(
                    sa.select(Environment).where(
                        Environment.id.in_({s.environment_id for s in services})
                    )
                )
            }
        targets: list[Target] = []
        by_service = {s.id: s for s in services}
        specs = {s.id: health_spec(s) for s in services}  # parsed once per refresh
        self.service_info = {
            s.id: ServiceInfo(
                name=s.name,
                environment_id=s.environment_id,
                thresholds=thresholds_for(s, specs[s.id]),
                replicas={r.id for r in replicas if r.service_id == s.id},
            )
            for s in services
        }
        for replica in replicas:
            svc = by_service[replica.service_id]
            spec = specs[svc.id]
            port = (replica.ports or {}).get("http")
            if not port or not spec.enabled:
                continue
            kind = "tcp" if spec.type == "tcp" else "http"
            targets.append(
                Target(
                    key=f"replica:{replica.id}",
                    kind=kind,
                    interval=spec.replica_interval,
                    timeout=spec.request_timeout,
                    spec={
                        "url": f"http://127.0.0.1:{port}{spec.path}",
                        "port": int(port),
                        "latency_limit_ms": spec.latency_limit_ms,
                    },
                    service_ids=(svc.id,),
                    environment_id=svc.environment_id,
                    replica_id=replica.id,
                )
            )
        for svc in services:
            spec = specs[svc.id]
            if svc.public_url and spec.enabled:
                targets.append(
                    Target(
                        key=f"url:{svc.id}",
                        kind="http",
                        interval=spec.url_interval(),
                        timeout=spec.request_timeout,
                        spec={
                            "url": svc.public_url,
                            "expect_status": tuple(spec.expect_status),
                            "body_contains": spec.body_contains,
                            "json_equals": spec.json_equals,
                            "latency_limit_ms": spec.latency_limit_ms,
                        },
                        service_ids=(svc.id,),
                        environment_id=svc.environment_id,
                        role="url",
                    )
                )
                parts = urlsplit(svc.public_url)
                if parts.scheme == "https" and parts.hostname:
                    # The certificate: a real handshake, days left in the check's detail.
                    targets.append(
                        Target(
                            key=f"tls:{svc.id}",
                            kind="tls",
                            interval=spec.url_interval(),
                            timeout=spec.request_timeout,
                            spec={"host": parts.hostname, "port": parts.port or 443},
                            service_ids=(svc.id,),
                            environment_id=svc.environment_id,
                            role="tls",
                        )
                    )
        for env_id, env in envs.items():
            members = tuple(s.id for s in services if s.environment_id == env_id)
            config = await dependency_config(self.db, env)  # sealed credentials, ${VAR}s
            interval = float(config.get("dependency_interval", 60))
            if config.get("database_url"):
                targets.append(
                    Target(
                        f"dep:{env_id}:database",
                        "postgres",
                        interval,
                        5.0,
                        {"dsn": str(config["database_url"])},
                        members,
                        env_id,
                        role="database",
                    )
                )
            if config.get("redis_url"):
                targets.append(
                    Target(
                        f"dep:{env_id}:redis",
                        "redis",
                        interval,
                        5.0,
                        {"url": str(config["redis_url"])},
                        members,
                        env_id,
                        role="redis",
                    )
                )
        return targets

    # -- scheduling -------------------------------------------------------------------------

    async def tick(self, now: float) -> None:
        """Start every target whose next slot has come (called every `tick` seconds)."""
        if (self.pending or self.backlog) and now - self._flushed >= self.settings.flush:
            self._flushed = now
            await self.flush()
        if now - self._refreshed >= self.settings.refresh and not self._paused():
            try:
                self.targets = await self.collect_targets()
                self.channels = await active_channels(self.db)
            except Exception as exc:
                self._pause(exc)  # the store is away: probe the targets of the last good read
            self._refreshed = now
        due_now: list[tuple[Target, int, float, bool]] = []
        for target in self.targets:
            shift = offset(target.key, target.interval)
            slot = int((now - shift) // target.interval)
            if self.last_slot.get(target.key) == slot:
                continue
            first = target.key not in self.last_slot
            self.last_slot[target.key] = slot
            if first:
                # A target seen for the first time waits for its own slot: after a restart,
                # thousands of targets must not all be probed in the same instant.
                continue
            due_now.append((target, slot, slot * target.interval + shift, first))
        if not due_now:
            return
        # While the store is away nobody can arbitrate: probe them all.
        won = {(t.key, slot) for t, slot, _, _ in due_now}
        if not self._paused():
            try:
                won = await self.claim_many([(t.key, slot) for t, slot, _, _ in due_now])
            except Exception as exc:
                self._pause(exc)
        for target, slot, due, first in due_now:
            if (target.key, slot) in won:
                task = asyncio.create_task(self._run(target, due, probe_now=first))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def claim_many(self, wanted: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Claim (target, slot) pairs (one statement per 500); returns the pairs this worker
        won (core/leases.py's slot claims, in the probe_claims table)."""
        rows = [{"target": key, "slot": slot} for key, slot in wanted]
        return {(key, slot) for key, slot in await self.leases.claim_slots(ProbeClaim, rows)}

    async def _claim(self, key: str, slot: int) -> bool:
        return (key, slot) in await self.claim_many([(key, slot)])

    async def _run(self, target: Target, due: float, *, probe_now: bool) -> None:
        try:
            async with self.semaphore:
                # Schedule lag: how late the probe starts against its slot (not the first run).
                if not probe_now:
                    self.lags.append(max(0.0, time.time() - due))
                result = await self.probe(target)
            self.record(target, result)
        except Exception as exc:
            log.error("probe failed to run", target=target.key, exc_info=exc)

    async def probe(self, target: Target) -> probes.ProbeResult:
        spec = target.spec
        if target.kind == "http":
            return await probes.http_probe(
                spec["url"],
                timeout=target.timeout,
                expect_status=tuple(spec.get("expect_status") or ()),
                body_contains=spec.get("body_contains"),
                json_equals=spec.get("json_equals"),
                latency_limit_ms=spec.get("latency_limit_ms"),
                ssl_context=self._tls,
            )
        if target.kind == "tcp":
            return await probes.tcp_probe("127.0.0.1", int(spec["port"]), timeout=target.timeout)
        if target.kind == "postgres":
            return await probes.postgres_probe(spec["dsn"], timeout=target.timeout)
        if target.kind == "tls":
            result = await probes.tls_probe(
                spec["host"], int(spec["port"]), timeout=target.timeout, ssl_context=self._tls
            )
            if "days_left" in result.extra:
                result.detail += f"; certificate expires in {result.extra['days_left']} days"
            return result
        return await probes.redis_probe(spec["url"], timeout=target.timeout)

    # -- results ----------------------------------------------------------------------------

    def record(self, target: Target, result: probes.ProbeResult) -> None:
        """Buffer a result; flush() stores and evaluates buffered results together."""
        now = utcnow()
        self.probed += 1
        self.pending.append((target, result, now))
        self.latest[target.key] = Latest(
            result.ok, result.latency_ms, result.status_code, result.detail, now
        )

    async def flush(self) -> None:
        """Store buffered checks and apply their consequences in one transaction:
        raw rows, replica and service health (damped), status_history rows; then incidents.
        While the store is away, keep them (bounded) and alert from memory."""
        async with self._flush_lock:
            batch, self.pending = self.pending, []
            if not batch and not self.backlog:
                return
            rows: list[dict[str, Any]] = []
            raws: dict[str, Raw] = {}
            affected: set[uuid.UUID] = set()
            await self._read_figures({t.service_ids[0] for t, _r, _a in batch if t.replica_id})
            for target, result, at in batch:
                row = self._check_row(target, result, at)
                figures = self.figures.get(target.replica_id) if target.replica_id else None
                if figures:
                    row.update({k: v for k, v in figures.items() if not k.startswith("_")})
                rows.append(row)
                if target.replica_id is not None:
                    observation = Observation(
                        responded=result.ok,
                        http_statuses=(result.status_code,) if result.status_code else (),
                        response_ms=result.latency_ms,
                        timed_out="timeout" in result.detail,
                        error_rate=(figures or {}).get("error_rate_5min"),
                    )
                    raw, reasons = derive(observation)
                    raws[f"replica:{target.replica_id}"] = (
                        "replica_health",
                        target.replica_id,
                        target.service_ids[0],
                        raw,
                        reasons,
                        Thresholds(),
                    )
                affected.update(target.service_ids)
            if not self._paused():
                try:
                    await self._fill_latest(affected)
                except Exception as exc:
                    self._pause(exc)  # the store is away: evaluate with what is in memory
            now = utcnow()
            for service_id in affected:
                evaluated = self._evaluate(service_id)
                if evaluated is None:
                    continue
                raw, reasons, responded, latency, code = evaluated
                info = self.service_info[service_id]
                rows.append(
                    self._service_figures(service_id)
                    | {
                        "id": uuid.uuid4(),
                        "service_id": service_id,
                        "environment_id": info.environment_id,
                        "target": f"service:{service_id}",
                        "kind": "service",
                        "instance_id": None,
                        "timestamp": now,
                        "ok": responded,
                        "overall_status": raw,
                        "response_time_ms": latency,
                        "http_status": code,
                        "detail": "; ".join(reasons)[:500] or None,
                        "replica_id": None,
                        "created_at": now,
                    }
                )
                raws[f"service:{service_id}"] = (
                    "service_health",
                    service_id,
                    service_id,
                    raw,
                    reasons,
                    info.thresholds,
                )
            stored, back = await self._write(Evaluated(rows, raws, now) if batch else None)
        for at, (kind, _entity_id, service_id, before, after, reasons) in stored:
            if kind == "service_health":
                await self._incident(service_id, before, after, reasons, at=at)
        if back:
            self.sent_away.clear()  # every alert sent from memory has met its incident by now

    async def _read_figures(self, services_: set[uuid.UUID]) -> None:
        """App-reported figures of these services' replicas, from the registered sources (kept
        from the last read when a source fails: the store may be away)."""
        if not self.figure_sources or self._paused():
            return
        replicas = [
            r
            for sid in services_
            if sid in self.service_info
            for r in self.service_info[sid].replicas
        ]
        try:
            for source in self.figure_sources:
                self.figures.update(await source(self.db, replicas))
        except Exception as exc:
            self._pause(exc)

    def _service_figures(self, service_id: uuid.UUID) -> dict[str, Any]:
        """A service row's app-reported columns: its replicas' merged (derive.merge_figures)."""
        info = self.service_info.get(service_id)
        found = [self.figures[r] for r in info.replicas if r in self.figures] if info else []
        if not found:
            return {}
        return merge_figures(found)

    async def _write(self, fresh: Evaluated | None) -> tuple[list[tuple[datetime, Change]], bool]:
        """Queue `fresh` and store the queue, oldest first. Returns the published changes with
        their times, and whether the store just came back. When the store is away the queue is
        kept (bounded) and `fresh` is judged in memory."""
        if fresh is not None:
            self._keep(fresh)
        stored: list[tuple[datetime, Change]] = []
        written = 0
        while self.backlog and not self._paused():
            unit = self.backlog[0]
            try:
                changes = await self._store(unit.rows, unit.raws, unit.at)
            except Exception as exc:
                if unreachable(exc) is None:
                    self._forget_oldest()  # a bad batch must not block the ones after it
                    raise
                self._pause(exc)
                break
            self._forget_oldest()
            written += len(unit.rows)
            stored += [(unit.at, change) for change in changes]
        if self.backlog:
            if fresh is not None:
                await self._alert_away(fresh)
            return stored, False
        back, self._away = self._away, False
        if back:
            log.warning("buffered health results written", results=written, dropped=self.dropped)
            self.dropped = 0
        return stored, back

    def _paused(self) -> bool:
        """Whether the store was found unreachable less than `store_retry` seconds ago (a
        network cut would otherwise cost a connect timeout on every tick)."""
        return self._away and time.monotonic() < self._retry_at

    def _pause(self, exc: Exception) -> None:
        """Note that the store is away (re-raise anything else)."""
        if unreachable(exc) is None:
            raise exc
        self._away = True
        self._retry_at = time.monotonic() + self.settings.store_retry

    def _keep(self, unit: Evaluated) -> None:
        """Queue an evaluated flush; beyond `buffer` results the oldest are dropped."""
        self.backlog.append(unit)
        self.buffered += len(unit.rows)
        while self.buffered > self.settings.buffer and self.backlog:
            if not self.dropped:
                log.warning("health results dropped", buffer=self.settings.buffer)
            self.dropped += len(self.backlog[0].rows)
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        self.buffered -= len(self.backlog.popleft().rows)

    async def _alert_away(self, unit: Evaluated) -> None:
        """While the store is away: damp in memory and alert a service leaving (or getting
        back to) healthy through the channels of the last good read."""
        for key, (kind, _entity_id, service_id, raw, reasons, thresholds) in unit.raws.items():
            before = self.dampers.get(key, Damper())
            after = self.dampers[key] = damp(before, raw, thresholds)
            if kind != "service_health" or after.status == before.status:
                continue
            if before.status == "healthy":
                event = "incident"
            elif after.status == "healthy":
                event = "recovery"
            else:
                continue  # inside one incident: no message
            info = self.service_info.get(service_id)
            name = info.name if info else str(service_id)
            cause = "; ".join(reasons) or after.status
            text = f"{name} is {after.status}: {cause}"
            if event == "recovery":
                text = f"{name} recovered"
            message = {
                "event": event,
                "service": name,
                "status": after.status,
                "from": before.status,
                "cause": cause,
                "store": "unreachable",
                "text": f"{text} (sent while pilothouse's store is unreachable)",
            }
            self.sent_away.setdefault(service_id, deque()).append(event)
            await broadcast(self.channels, message)

    def _sent_already(self, service_id: uuid.UUID, event: str) -> bool:
        """Whether this message went out from memory while the store was away."""
        sent = self.sent_away.get(service_id)
        if sent and sent[0] == event:
            sent.popleft()
            return True
        return False

    async def _channels(self) -> list[Endpoint]:
        """The active channels; those of the last good read while the store is away."""
        try:
            self.channels = await active_channels(self.db)
        except Exception as exc:
            if unreachable(exc) is None:
                raise
        return self.channels

    def _check_row(
        self, target: Target, result: probes.ProbeResult, at: datetime
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "service_id": target.service_ids[0] if len(target.service_ids) == 1 else None,
            "replica_id": target.replica_id,
            "environment_id": target.environment_id,
            "target": target.key,
            "kind": target.kind,
            "instance_id": target.key,
            "timestamp": at,
            "ok": result.ok,
            "overall_status": "healthy" if result.ok else "unhealthy",
            "response_time_ms": result.latency_ms,
            "http_status": result.status_code,
            "detail": mask_text(result.detail)[:500],
            "created_at": at,
            "database_status": None,
            "database_response_ms": None,
            "redis_status": None,
            "redis_response_ms": None,
        }
        if target.role in ("database", "redis"):
            latency = result.latency_ms if result.ok else None
            status = dependency_status(Dependency(target.role, target.role, latency))
            row[f"{target.role}_status"] = status
            row[f"{target.role}_response_ms"] = result.latency_ms
        return row

    def _keys_of(self, service_id: uuid.UUID) -> list[str]:
        info = self.service_info.get(service_id)
        if info is None:
            return []
        keys = [f"replica:{r}" for r in info.replicas] + [f"url:{service_id}", f"tls:{service_id}"]
        keys += [f"dep:{info.environment_id}:database", f"dep:{info.environment_id}:redis"]
        return keys

    async def _fill_latest(self, services_: set[uuid.UUID]) -> None:
        """Targets another worker probed are read from the database (latest row each)."""
        wanted = {k for sid in services_ for k in self._keys_of(sid) if k not in self.latest}
        known = {t.key for t in self.targets}
        wanted &= known
        if not wanted:
            return
        since = utcnow() - timedelta(minutes=10)
        async with self.db.session(write=False) as session:
            found = await session.scalars(
                sa.select(HealthCheck)
                .where(HealthCheck.target.in_(wanted), HealthCheck.timestamp >= since)
                .order_by(HealthCheck.timestamp)
            )
            for check in found:
                self.latest[check.target] = Latest(
                    check.ok,
                    check.response_time_ms,
                    check.http_status,
                    check.detail or "",
                    check.timestamp,
                )

    def _evaluate(
        self, service_id: uuid.UUID
    ) -> tuple[Status, list[str], bool, float | None, int | None] | None:
        """The service's raw status from the latest result of each of its targets."""
        info = self.service_info.get(service_id)
        if info is None:
            return None
        stale = utcnow() - timedelta(minutes=10)
        front = [
            self.latest[k]
            for k in self._keys_of(service_id)
            if not k.startswith(("dep:", "tls:"))
            and k in self.latest
            and self.latest[k].at >= stale
        ]
        if not front:
            return None
        responded = any(c.ok for c in front)
        latencies = [c.latency_ms for c in front if c.ok and c.latency_ms is not None]
        deps = tuple(
            Dependency(kind, kind, self.latest[key].latency_ms if self.latest[key].ok else None)
            for kind in ("database", "redis")
            if (key := f"dep:{info.environment_id}:{kind}") in self.latest
            and self.latest[key].at >= stale
        )
        observation = Observation(
            responded=responded,
            http_statuses=tuple(c.status_code for c in front if c.status_code and not c.ok),
            response_ms=min(latencies) if latencies else None,
            timed_out=not responded and all("timeout" in c.detail for c in front),
            error_rate=self._service_figures(service_id).get("error_rate_5min"),
            dependencies=deps,
            certificate=self._certificate(service_id, stale),
        )
        raw, reasons = derive(observation, info.thresholds)
        code = max((c.status_code or 0 for c in front), default=0) or None
        return raw, reasons, responded, min(latencies) if latencies else None, code

    def _certificate(self, service_id: uuid.UUID, stale: datetime) -> str | None:
        """The warning the service's latest TLS probe result adds to its health, if any."""
        tls = self.latest.get(f"tls:{service_id}")
        if tls is None or tls.at < stale:
            return None
        return certificate_warning(tls.ok, tls.detail, self.settings.cert_warn_days)

    async def _store(
        self, rows: list[dict[str, Any]], raws: dict[str, Raw], now: datetime
    ) -> list[Change]:
        """One transaction: the check rows, the damped states, history for published changes
        (dated `now`, when the results were evaluated)."""
        changes: list[Change] = []
        async with self.db.session() as session:
            involved = {raw[2] for raw in raws.values()} | {
                r["service_id"] for r in rows if r.get("service_id") is not None
            }
            stopped = await self._stopped(session, involved)
            if stopped:
                # Probes in flight when the service was stopped: a stopped service is not
                # down, so what they saw is neither stored nor published.
                rows = [r for r in rows if r.get("service_id") not in stopped]
                raws = {k: raw for k, raw in raws.items() if raw[2] not in stopped}
            if rows:
                await session.execute(sa.insert(HealthCheck), rows)
            states = {
                st.target: st
                for st in await session.scalars(
                    sa.select(HealthState)
                    .where(HealthState.target.in_(list(raws)))
                    .with_for_update()
                )
            }
            for key, (kind, entity_id, service_id, raw, reasons, thresholds) in raws.items():
                state = states.get(key)
                before = (
                    Damper(state.status, state.streak_status, state.streak)  # type: ignore[arg-type]
                    if state
                    else Damper()
                )
                after = self.dampers[key] = damp(before, raw, thresholds)
                if state is None:
                    session.add(
                        HealthState(
                            target=key,
                            service_id=service_id,
                            status=after.status,
                            streak_status=after.streak_status,
                            streak=after.streak,
                            reasons=reasons,
                            changed_at=now,
                            updated_at=now,
                        )
                    )
                    continue
                state.streak_status, state.streak, state.updated_at = (
                    after.streak_status,
                    after.streak,
                    now,
                )
                state.reasons = reasons
                if after.status != state.status:
                    changes.append(
                        (kind, entity_id, service_id, state.status, after.status, reasons)
                    )
                    history.record_change(
                        session,
                        kind,
                        entity_id,
                        state.status,
                        after.status,
                        actor=MONITOR,
                        reason="; ".join(reasons) or "recovered",
                    ).changed_at = now
                    state.status, state.changed_at = after.status, now
                    if kind == "replica_health":
                        await session.execute(
                            sa.update(Replica)
                            .where(Replica.id == entity_id)
                            .values(health=after.status)
                            .execution_options(synchronize_session=False)
                        )
        return changes

    @staticmethod
    async def _stopped(session: AsyncSession, service_ids: set[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these services are stopped now (`pilothouse service stop`)."""
        if not service_ids:
            return set()
        found = await session.scalars(
            sa.select(Service.id).where(Service.id.in_(service_ids), Service.status == "stopped")
        )
        return set(found)

    # -- incidents and alerts -------------------------------------------------------------

    async def _incident(
        self,
        service_id: uuid.UUID,
        before: str,
        after: str,
        reasons: list[str],
        *,
        at: datetime | None = None,
    ) -> None:
        at = at or utcnow()
        async with self.db.session() as session:
            svc = await session.get(Service, service_id)
            name = svc.name if svc else str(service_id)
            open_incident = await session.scalar(
                sa.select(Incident).where(
                    Incident.service_id == service_id, Incident.ended_at.is_(None)
                )
            )
            message: dict[str, Any] | None = None
            action = incident_action(after, open_incident.status if open_incident else None)
            if action == "open":
                incident = Incident(
                    service_id=service_id,
                    started_at=at,
                    status=after,
                    cause="; ".join(reasons) or after,
                    notified_at=utcnow(),
                )
                session.add(incident)
                await session.flush()
                message = {
                    "event": "incident",
                    "service": name,
                    "status": after,
                    "from": before,
                    "cause": incident.cause,
                    "incident": str(incident.id),
                    "text": f"{name} is {after}: {incident.cause}",
                }
            elif action in ("escalate", "ease") and open_incident is not None:
                open_incident.status = after  # inside one incident: no message
            elif action == "recover" and open_incident is not None:
                open_incident.ended_at = at
                open_incident.recovery_notified_at = utcnow()
                lasted = (open_incident.ended_at - open_incident.started_at).total_seconds()
                message = {
                    "event": "recovery",
                    "service": name,
                    "status": "healthy",
                    "incident": str(open_incident.id),
                    "cause": open_incident.cause,
                    "duration_seconds": round(lasted),
                    "text": f"{name} recovered after {lasted:.0f}s ({open_incident.cause})",
                }
        if message is not None and not self._sent_already(service_id, message["event"]):
            await broadcast(await self._channels(), message, db=self.db)

    async def remind(self) -> None:
        """Every reminder_minutes while an incident lasts, say it again."""
        every = timedelta(minutes=self.settings.reminder_minutes)
        now = utcnow()
        async with self.db.session() as session:
            due = list(
                await session.scalars(
                    sa.select(Incident).where(
                        Incident.ended_at.is_(None), Incident.notified_at.is_not(None)
                    )
                )
            )
            messages = []
            for incident in due:
                if incident.notified_at is None:
                    continue
                count = reminder_due(incident.notified_at, now, every, incident.reminders)
                if count is not None:
                    incident.reminders = count
                    svc = await session.get(Service, incident.service_id)
                    name = svc.name if svc else str(incident.service_id)
                    messages.append(
                        {
                            "event": "reminder",
                            "service": name,
                            "status": incident.status,
                            "incident": str(incident.id),
                            "cause": incident.cause,
                            "reminder": count,
                            "text": f"still {incident.status}: {name} ({incident.cause})",
                        }
                    )
        if messages:
            channels = await self._channels()
            for message in messages:
                await broadcast(channels, message, db=self.db)
