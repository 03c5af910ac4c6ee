"""The health monitor (runs in the worker; the schedule ticks every 0.5 s).

Targets come from the database: every running replica (HTTP or TCP on its port, every
`replica_interval` s, default 30), each service's public URL (every `interval` s, default 60) and
the dependencies declared in its environment's config (`database_url`, `redis_url`). Each target
runs once per time slot at a fixed per-target offset (jitter), claimed in probe_claims so it runs
once however many workers share the database, with at most `concurrency` probes at a time.
Results become health_checks rows; replica and service health is derived (derive.py), damped, and
each published change is a status_history row. A service leaving healthy opens an incident with
one alert, reminders every `reminder_minutes` while it lasts, and one recovery message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pilothouse.access import Principal
from pilothouse.alerts.service import broadcast
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.logging import get_logger, mask_text
from pilothouse.environments.models import Environment
from pilothouse.healthchecks import probes
from pilothouse.healthchecks.derive import (
    Damper,
    Dependency,
    Observation,
    Status,
    Thresholds,
    damp,
    dependency_status,
    derive,
)
from pilothouse.healthchecks.models import (
    HealthCheck,
    HealthState,
    Incident,
    NotificationChannel,
    ProbeClaim,
)
from pilothouse.history import service as history
from pilothouse.replicas.models import Replica
from pilothouse.services.models import Service

log = get_logger("pilothouse.monitor")
MONITOR = Principal(id=uuid.UUID(int=0), name="monitor", role="admin")


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


@dataclass
class MonitorSettings:
    tick: float = 0.5
    refresh: float = 5.0
    concurrency: int = 200
    reminder_minutes: float = 30.0
    worker: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


def health_spec(service: Service) -> dict[str, Any]:
    return dict(service.health_check or {})


def thresholds_for(service: Service) -> Thresholds:
    given = health_spec(service).get("thresholds") or {}
    known = {k: v for k, v in given.items() if k in Thresholds.__dataclass_fields__}
    return Thresholds(**known)


def offset(key: str, interval: float) -> float:
    """A stable offset inside the interval for each target (spreads probes: jitter)."""
    return (zlib.crc32(key.encode()) % max(1, int(interval * 1000))) / 1000


class Monitor:
    def __init__(self, db: Database, settings: MonitorSettings | None = None) -> None:
        self.db = db
        self.settings = settings or MonitorSettings()
        self.targets: list[Target] = []
        self.last_slot: dict[str, int] = {}
        self.semaphore = asyncio.Semaphore(self.settings.concurrency)
        self.tasks: set[asyncio.Task[None]] = set()
        self.lags: list[float] = []  # seconds between due time and start (for benchmarks)
        self._refreshed = -1e9

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
        for replica in replicas:
            svc = by_service[replica.service_id]
            spec = health_spec(svc)
            port = (replica.ports or {}).get("http")
            if not port or spec.get("enabled") is False:
                continue
            kind = "tcp" if spec.get("type") == "tcp" else "http"
            targets.append(
                Target(
                    key=f"replica:{replica.id}",
                    kind=kind,
                    interval=float(spec.get("replica_interval", 30)),
                    timeout=float(spec.get("request_timeout", 5)),
                    spec={
                        "url": f"http://127.0.0.1:{port}{spec.get('path', '/health')}",
                        "port": int(port),
                    },
                    service_ids=(svc.id,),
                    environment_id=svc.environment_id,
                    replica_id=replica.id,
                )
            )
        for svc in services:
            spec = health_spec(svc)
            if svc.public_url and spec.get("enabled") is not False:
                targets.append(
                    Target(
                        key=f"url:{svc.id}",
                        kind="http",
                        interval=float(spec.get("interval", 60)),
                        timeout=float(spec.get("request_timeout", 5)),
                        spec={
                            "url": svc.public_url,
                            "expect_status": tuple(spec.get("expect_status", ())),
                            "body_contains": spec.get("body_contains"),
                            "json_equals": spec.get("json_equals"),
                        },
                        service_ids=(svc.id,),
                        environment_id=svc.environment_id,
                        role="url",
                    )
                )
        for env_id, env in envs.items():
            members = tuple(s.id for s in services if s.environment_id == env_id)
            config = env.config or {}
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
        if now - self._refreshed >= self.settings.refresh:
            self.targets = await self.collect_targets()
            self._refreshed = now
        for target in self.targets:
            shift = offset(target.key, target.interval)
            slot = int((now - shift) // target.interval)
            if self.last_slot.get(target.key) == slot:
                continue
            first = target.key not in self.last_slot
            self.last_slot[target.key] = slot
            due = slot * target.interval + shift
            task = asyncio.create_task(self._run(target, slot, due, probe_now=first))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _claim(self, key: str, slot: int) -> bool:
        insert = (postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert)(
            ProbeClaim
        )
        statement = insert.values(
            target=key, slot=slot, worker=self.settings.worker, claimed_at=utcnow()
        )
        # RETURNING tells whether our row went in; rowcount is not reliable for
        # INSERT .. ON CONFLICT DO NOTHING on every driver (psycopg reported -1).
        async with self.db.session() as session:
            result = await session.execute(
                statement.on_conflict_do_nothing().returning(ProbeClaim.slot)
            )
            return result.first() is not None

    async def _run(self, target: Target, slot: int, due: float, *, probe_now: bool) -> None:
        try:
            if not await self._claim(target.key, slot):
                return
            async with self.semaphore:
                # Schedule lag: how late the probe starts against its slot (not the first run).
                if not probe_now:
                    self.lags.append(max(0.0, time.time() - due))
                result = await self.probe(target)
            await self.record(target, result)
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
            )
        if target.kind == "tcp":
            return await probes.tcp_probe("127.0.0.1", int(spec["port"]), timeout=target.timeout)
        if target.kind == "postgres":
            return await probes.postgres_probe(spec["dsn"], timeout=target.timeout)
        return await probes.redis_probe(spec["url"], timeout=target.timeout)

    # -- results ----------------------------------------------------------------------------

    async def record(self, target: Target, result: probes.ProbeResult) -> None:
        """Store the check, update the damped health of the replica and its services."""
        check_status: Status = "healthy" if result.ok else "unhealthy"
        row = HealthCheck(
            service_id=target.service_ids[0] if len(target.service_ids) == 1 else None,
            replica_id=target.replica_id,
            environment_id=target.environment_id,
            target=target.key,
            kind=target.kind,
            instance_id=target.key,
            ok=result.ok,
            overall_status=check_status,
            response_time_ms=result.latency_ms,
            http_status=result.status_code,
            detail=mask_text(result.detail)[:500],
        )
        if target.role in ("database", "redis"):
            dep = dependency_status(
                Dependency(target.role, target.role, result.latency_ms if result.ok else None)
            )
            if target.role == "database":
                row.database_status, row.database_response_ms = dep, result.latency_ms
            else:
                row.redis_status, row.redis_response_ms = dep, result.latency_ms
        async with self.db.session() as session:
            session.add(row)
        if target.replica_id is not None:
            observation = Observation(
                responded=result.ok,
                response_ms=result.latency_ms,
                timed_out="timeout" in result.detail,
            )
            raw, reasons = derive(observation)
            await self._publish(
                f"replica:{target.replica_id}",
                "replica_health",
                target.replica_id,
                target.service_ids[0],
                raw,
                reasons,
            )
        for service_id in target.service_ids:
            await self.evaluate_service(service_id)

    async def evaluate_service(self, service_id: uuid.UUID) -> None:
        """Derive the service's health from the latest check of each of its targets."""
        async with self.db.session(write=False) as session:
            svc = await session.get(Service, service_id)
            if svc is None or svc.deleted_at is not None:
                return
            since = utcnow() - timedelta(minutes=10)
            latest: dict[str, HealthCheck] = {}
            rows = await session.scalars(
                sa.select(HealthCheck)
                .where(
                    sa.or_(
                        HealthCheck.service_id == service_id,
                        HealthCheck.target.like(f"dep:{svc.environment_id}:%"),
                    ),
                    HealthCheck.timestamp >= since,
                    HealthCheck.kind != "service",
                )
                .order_by(HealthCheck.timestamp)
            )
            for check in rows:
                latest[check.target] = check
            live = set(
                await session.scalars(
                    sa.select(Replica.id).where(
                        Replica.service_id == service_id, Replica.status == "running"
                    )
                )
            )
        front = [
            c
            for k, c in latest.items()
            if k.startswith("url:") or (k.startswith("replica:") and c.replica_id in live)
        ]
        if not front:
            return
        responded = any(c.ok for c in front)
        latencies = [c.response_time_ms for c in front if c.ok and c.response_time_ms is not None]
        deps = tuple(
            Dependency(
                k.rsplit(":", 1)[1], k.rsplit(":", 1)[1], c.response_time_ms if c.ok else None
            )
            for k, c in latest.items()
            if k.startswith("dep:")
        )
        observation = Observation(
            responded=responded,
            response_ms=min(latencies) if latencies else None,
            timed_out=not responded and all("timeout" in (c.detail or "") for c in front),
            dependencies=deps,
        )
        raw, reasons = derive(observation, thresholds_for(svc))
        async with self.db.session() as session:
            session.add(
                HealthCheck(
                    service_id=service_id,
                    environment_id=svc.environment_id,
                    target=f"service:{service_id}",
                    kind="service",
                    ok=responded,
                    overall_status=raw,
                    response_time_ms=min(latencies) if latencies else None,
                    http_status=max((c.http_status or 0 for c in front), default=None) or None,
                    detail="; ".join(reasons)[:500] or None,
                )
            )
        await self._publish(
            f"service:{service_id}",
            "service_health",
            service_id,
            service_id,
            raw,
            reasons,
            thresholds=thresholds_for(svc),
        )

    async def _publish(
        self,
        key: str,
        kind: str,
        entity_id: uuid.UUID,
        service_id: uuid.UUID,
        raw: Status,
        reasons: list[str],
        *,
        thresholds: Thresholds | None = None,
    ) -> None:
        """Damp the raw status; a published change is a status_history row (and, for a
        service, opens or closes its incident)."""
        changed: tuple[str, str] | None = None
        async with self.db.session() as session:
            state = await session.get(HealthState, key, with_for_update=True)
            before = Damper(state.status, state.streak_status, state.streak) if state else Damper()  # type: ignore[arg-type]
            after = damp(before, raw, thresholds or Thresholds())
            now = utcnow()
            if state is None:
                state = HealthState(
                    target=key,
                    service_id=service_id,
                    status=after.status,
                    streak_status=after.streak_status,
                    streak=after.streak,
                    reasons=reasons,
                    changed_at=now,
                    updated_at=now,
                )
                session.add(state)
            else:
                state.streak_status, state.streak, state.updated_at = (
                    after.streak_status,
                    after.streak,
                    now,
                )
                if after.status != state.status:
                    changed = (state.status, after.status)
                    state.status, state.changed_at = after.status, now
                state.reasons = reasons
            if changed:
                history.record_change(
                    session,
                    kind,
                    entity_id,
                    changed[0],
                    changed[1],
                    actor=MONITOR,
                    reason="; ".join(reasons) or "recovered",
                )
                if kind == "replica_health":
                    replica = await session.get(Replica, entity_id)
                    if replica is not None:
                        replica.health = changed[1]
        if changed and kind == "service_health":
            await self._incident(service_id, changed[0], changed[1], reasons)

    # -- incidents and alerts -------------------------------------------------------------

    async def _channels(self) -> list[NotificationChannel]:
        async with self.db.session(write=False) as session:
            return list(
                await session.scalars(
                    sa.select(NotificationChannel).where(NotificationChannel.is_active)
                )
            )

    async def _incident(
        self, service_id: uuid.UUID, before: str, after: str, reasons: list[str]
    ) -> None:
        async with self.db.session() as session:
            svc = await session.get(Service, service_id)
            name = svc.name if svc else str(service_id)
            open_incident = await session.scalar(
                sa.select(Incident).where(
                    Incident.service_id == service_id, Incident.ended_at.is_(None)
                )
            )
            message: dict[str, Any] | None = None
            if after != "healthy" and open_incident is None:
                incident = Incident(
                    service_id=service_id,
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
            elif after != "healthy" and open_incident is not None:
                open_incident.status = after  # escalation or easing inside one incident: no message
            elif after == "healthy" and open_incident is not None:
                open_incident.ended_at = utcnow()
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
        if message is not None:
            await broadcast(await self._channels(), message)

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
                last = (
                    incident.notified_at + every * incident.reminders
                    if incident.notified_at
                    else now
                )
                if now - last >= every:
                    incident.reminders += 1
                    svc = await session.get(Service, incident.service_id)
                    name = svc.name if svc else str(incident.service_id)
                    messages.append(
                        {
                            "event": "reminder",
                            "service": name,
                            "status": incident.status,
                            "incident": str(incident.id),
                            "cause": incident.cause,
                            "text": f"still {incident.status}: {name} ({incident.cause})",
                        }
                    )
        if messages:
            channels = await self._channels()
            for message in messages:
                await broadcast(channels, message)
