"""Supervision of live replicas through their driver (the `deployments.supervise` loop, 1 s).

For every replica of a driver that supervises its replicas (`Driver.supervised`):
- a running replica the driver still sees alive is adopted (after a pilothouse restart, by pid
  and process start time for the process driver);
- one that is gone is marked failed, due for a restart after `backoff(restart_count)`;
- a failed one whose time has come is restarted by its driver (`Driver.restart`: same version,
  health-gated), put back in the router, or backed off again;
- replicas of stopped services (`service stop`) are neither restarted nor sampled;
- replicas taken out of the live set by someone else (failed with `keep_running` off: lost
  with their node, nodes/watch.py) have their services re-routed to the replicas still
  running at the next tick, once per replica, whether or not a replacement is made;
- replicas of deleted services are stopped, and so are those a stop left running (its worker
  died, or a restart raced it); stops abandoned by a dead worker are finished, and
  every `STATS_EVERY` seconds CPU and memory are sampled (`Driver.sample`; the loop interval
  `deployments.sample` overrides it: the autoscaler reacts no faster than this);
- replica lifecycle (replicas/lifecycle.py decides, the service's driver_config configures):
  a live replica whose last `liveness_failures` health checks failed, or (sampling enforcement)
  that stays over its `memory_mb` longer than `memory_grace_seconds`, is stopped and restarted
  like a crashed one; a replica restarted `max_restarts` times within `restart_window` is left
  `failed`, its service is then degraded or failed, and an alert goes to the channels.
The database decides who does what (a restart is claimed by a conditional UPDATE).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.alerts.service import notify
from pilothouse.artifacts.models import Artifact
from pilothouse.core.clock import utcnow
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Tasks
from pilothouse.deployments import pins
from pilothouse.deployments.engine import (
    ENGINE,
    Engine,
    record_replica,
    replica_info,
    service_spec,
)
from pilothouse.deployments.models import ACTIVE_STATUSES, Deployment
from pilothouse.drivers import registry
from pilothouse.drivers.base import (
    Driver,
    LimitEnforcing,
    ReplicaInfo,
    RolloutFailed,
    ServiceSpec,
    SupervisedConfig,
)
from pilothouse.drivers.transport import NodeAccess
from pilothouse.environments.models import Environment
from pilothouse.healthchecks.models import HealthCheck
from pilothouse.healthchecks.spec import parse as parse_health
from pilothouse.history.models import StatusHistory
from pilothouse.replicas import lifecycle
from pilothouse.replicas import service as replicas
from pilothouse.replicas.models import Replica
from pilothouse.services import service as services
from pilothouse.services.models import Service

log = get_logger("pilothouse.worker")

BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
STATS_EVERY = 5.0
STOPPING_ABANDONED = 30.0
DELETED_GRACE = 10.0
#: How far back `_reroute_dropped` looks for replicas dropped from the live set (seconds).
DROPPED_WINDOW = 600.0
ABANDONED_GRACE = 5.0
#: Health checks in the first seconds after a (re)start do not count toward liveness: the health
#: monitor rereads its targets every 5 s (healthchecks/monitor.py), so until then it may still
#: probe the port of the replica's previous process. It is also the start-up grace of liveness.
LIVENESS_SETTLE = 5.0


def backoff(restart_count: int) -> float:
    """Seconds before the next restart: 1, 2, 4, ... capped at 60."""
    return float(min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(restart_count, 0)))


class ReplicaEvents:
    """What a driver reports while restarting a replica (no deployment: logs go to the log)."""

    def __init__(self, engine: Engine, service: Service) -> None:
        self.engine = engine
        self.service = service

    async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None:
        log.info(message, service=self.service.name, source=source)

    async def log_many(self, messages: list[str], *, source: str) -> None:
        return None

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        raise RuntimeError("supervision restarts replicas; it never creates one")

    async def place(self, prefer: uuid.UUID | None = None) -> NodeAccess | None:
        """A restarted replica's node: the one it ran on when that is ready, else placed."""
        return await self.engine.place(self.service.id, None, prefer, {})

    async def replica_changed(
        self, replica_id: uuid.UUID, to: str, *, reason: str | None = None, **fields: Any
    ) -> None:
        await record_replica(self.engine.db, replica_id, to, reason=reason, **fields)


class Supervisor:
    def __init__(self, engine: Engine, tasks: Tasks, *, stats_every: float = STATS_EVERY) -> None:
        self.engine = engine
        self.db = engine.db
        self.tasks = tasks
        self.adopted: set[uuid.UUID] = set()
        self.stats_every = stats_every
        self._last_stats = -stats_every
        self._rerouted: dict[uuid.UUID, datetime] = {}  # dropped replica -> when it was

    def _driver(self, environment: Environment) -> Driver | None:
        return self.engine.drivers.get(environment.driver)

    async def _replicas(self, statuses: tuple[str, ...]) -> list[tuple[Replica, Service, Driver]]:
        async with self.db.session(write=False) as session:
            rows = await session.execute(
                sa.select(Replica, Service, Environment)
                .join(Service, Service.id == Replica.service_id)
                .join(Environment, Environment.id == Service.environment_id)
                .where(
                    Replica.status.in_(statuses),
                    Replica.keep_running.is_(True),
                    Service.deleted_at.is_(None),
                    Service.status != "stopped",  # `service stop`: never restarted
                    Environment.driver.in_(registry.supervised()),
                )
            )
            found = []
            for replica, service, environment in rows:
                driver = self._driver(environment)
                if driver is not None:
                    found.append((replica, service, driver))
            return found

    async def _route(self, service: Service, driver: Driver) -> None:
        """Point the service's router (if any) at its running replicas."""
        read_at = time.monotonic()  # a replica routed after this may be missing from the read
        async with self.db.session(write=False) as session:
            rows = await session.scalars(
                sa.select(Replica).where(
                    Replica.service_id == service.id,
                    Replica.status == "running",
                    Replica.keep_running.is_(True),
                )
            )
            backends = sorted(b for r in rows if (b := self.engine.backend(r)) is not None)
        await driver.route(service.id, dict(service.driver_config or {}), backends, read_at=read_at)

    async def restore_router(self) -> None:
        """After a restart, make the router serve what the database says is live."""
        await self.engine.refresh_nodes()
        async with self.db.session(write=False) as session:
            rows = await session.execute(
                sa.select(Service, Environment)
                .join(Environment, Environment.id == Service.environment_id)
                .where(Service.deleted_at.is_(None), Service.status == "running")
            )
            services = list(rows)
        for service, environment in services:
            driver = self._driver(environment)
            if driver is None:
                continue
            try:
                await self._route(service, driver)
            except Exception as exc:
                log.error("router restore failed", service=service.name, exc_info=exc)

    async def supervise(self) -> None:
        now = utcnow()
        await self.engine.refresh_nodes()
        for replica, service, driver in await self._replicas(("running",)):
            if driver.alive(replica_info(replica)):
                if replica.id not in self.adopted:
                    self.adopted.add(replica.id)
                    log.info("replica adopted", replica=str(replica.id), pid=replica.pid)
                continue
            await self._mark_crashed(replica, service, driver)
        await self._check_liveness()
        await self._reroute_dropped()
        for replica, service, driver in await self._replicas(("failed",)):
            due = replica.next_restart_at is None or replica.next_restart_at <= now
            if due:
                self.tasks.spawn(
                    ("restart", replica.id), self._restart(replica.id, service, driver)
                )
        await self._finish_abandoned_stops()
        await self._stop_deleted_services()
        loop_now = asyncio.get_running_loop().time()
        if loop_now - self._last_stats >= self.stats_every:
            self._last_stats = loop_now
            await self._sample()

    async def _reroute_dropped(self) -> None:
        """Re-route the services of replicas another part took out of the live set (marked
        failed with `keep_running` off: a node found unreachable, nodes/watch.py): their
        router must stop sending requests to them at once, even when no replacement rollout
        is made (one in progress, or it does not fit). Once per replica, looking back
        DROPPED_WINDOW seconds (a re-route is idempotent: a worker that starts does it again)."""
        since = utcnow() - timedelta(seconds=DROPPED_WINDOW)
        async with self.db.session(write=False) as session:
            rows = await session.execute(
                sa.select(Replica.id, Replica.updated_at, Service, Environment)
                .join(Service, Service.id == Replica.service_id)
                .join(Environment, Environment.id == Service.environment_id)
                .where(
                    Replica.status == "failed",
                    Replica.keep_running.is_(False),
                    Replica.updated_at >= since,
                    Service.deleted_at.is_(None),
                    Service.status != "stopped",
                    Environment.driver.in_(registry.supervised()),
                )
            )
            found = list(rows)
        self._rerouted = {k: at for k, at in self._rerouted.items() if at >= since}
        todo: dict[uuid.UUID, tuple[Service, Driver]] = {}
        for replica_id, at, service, environment in found:
            if replica_id in self._rerouted:
                continue
            self._rerouted[replica_id] = at
            driver = self._driver(environment)
            if driver is not None:
                todo[service.id] = (service, driver)
        for service, driver in todo.values():
            try:
                await self._route(service, driver)
            except Exception as exc:
                log.error("re-route after lost replicas failed", service=service.name, exc_info=exc)

    async def _mark_crashed(self, replica: Replica, service: Service, driver: Driver) -> None:
        known = (
            driver.exit_reason(replica_info(replica))
            if isinstance(driver, LimitEnforcing)
            else None
        )
        reason = known or "process exited"
        async with self.db.session() as session:
            row = await session.get(Replica, replica.id, with_for_update=True)
            if row is None or row.status != "running":
                return
            gave_up = await self._fail(session, row, service, reason)
        log.warning("replica crashed", replica=str(replica.id), service=service.name, reason=reason)
        await self._route(service, driver)
        if gave_up:
            await self._gave_up(replica.id, service, gave_up)

    async def _claim_restart(self, replica_id: uuid.UUID) -> Replica | None:
        """Take a due restart for this worker (pushes next_restart_at an hour ahead)."""
        now = utcnow()
        async with self.db.session() as session:
            claimed = await session.execute(
                sa.update(Replica)
                .where(
                    Replica.id == replica_id,
                    Replica.status == "failed",
                    Replica.keep_running.is_(True),
                    sa.or_(Replica.next_restart_at.is_(None), Replica.next_restart_at <= now),
                    Replica.service_id.not_in(
                        sa.select(Service.id).where(Service.status == "stopped")
                    ),
                )
                .values(next_restart_at=now + timedelta(seconds=3600))
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                return None
            return await session.get(Replica, replica_id)

    async def _spec(
        self,
        service: Service,
        version: str,
        deployment_id: uuid.UUID | None,
        artifact_id: uuid.UUID | None = None,
    ) -> ServiceSpec:
        """What the driver needs to start the replica again: its version, and the variable
        versions its own release pinned (never today's: replicas of a release never drift)."""
        async with self.db.session(write=False) as session:
            env = await session.get(Environment, service.environment_id)
            assert env is not None
            artifact = await session.get(Artifact, artifact_id) if artifact_id else None
            delivery = await pins.delivery(
                session, self.engine.keyring(), env, service.id, deployment_id
            )
        return service_spec(
            service,
            env,
            version=version,
            commit_sha=None,
            variables=delivery.values,
            secrets=delivery.secrets,
            event="restart",
            artifact=artifact,
            release_id=deployment_id,
        )

    async def _restart(self, replica_id: uuid.UUID, service: Service, driver: Driver) -> None:
        """Start a crashed replica again (same version, a fresh port); back off if it fails."""
        row = await self._claim_restart(replica_id)
        if row is None or (not service.command and driver.name != "container"):
            return  # a container runs its image's own command when the service has none
        info = replica_info(row)
        spec = await self._spec(service, info.version or "", row.deployment_id, row.artifact_id)
        try:
            restarted = await driver.restart(spec, info, ReplicaEvents(self.engine, service))
        except RolloutFailed as exc:
            async with self.db.session() as session:
                current = await session.get(Replica, replica_id, with_for_update=True)
                assert current is not None
                gave_up = await self._fail(session, current, service, exc.reason)
            if gave_up:
                await self._gave_up(replica_id, service, gave_up)
            return
        if await self._stopped_meanwhile(replica_id, restarted, driver):
            return
        async with self.db.session() as session:
            current = await session.get(Replica, replica_id, with_for_update=True)
            assert current is not None
            current.next_restart_at = None
            current.health = "healthy"
            await replicas.transition(
                session, current, "running", actor=ENGINE, reason=_restarted(current)
            )
            count = current.restart_count
        log.info("replica restarted", replica=str(replica_id), restarts=count)
        await self._route(service, driver)

    async def _stopped_meanwhile(
        self, replica_id: uuid.UUID, restarted: ReplicaInfo, driver: Driver
    ) -> bool:
        """A restart that was under way when its service was stopped: the process it started
        is stopped again, never left running for a stopped service."""
        async with self.db.session(write=False) as session:
            row = await session.get(Replica, replica_id)
            service = await session.get(Service, row.service_id) if row else None
            stopped = (
                row is None
                or not row.keep_running
                or (service is not None and service.status == "stopped")
            )
        if not stopped:
            return False
        code = await driver.terminate(restarted, DELETED_GRACE)
        async with self.db.session() as session:
            current = await session.get(Replica, replica_id, with_for_update=True)
            if current is not None and current.status != "stopped":
                current.keep_running, current.exit_code = False, code
                if current.status in ("starting", "running"):
                    await replicas.transition(session, current, "stopping", actor=ENGINE)
                await replicas.transition(
                    session, current, "stopped", actor=ENGINE, reason="service stopped"
                )
        return True

    async def _stop_deleted_services(self) -> None:
        """Replicas of a deleted service are stopped and its router entry removed; so are
        those a `service stop` left behind (its worker died mid-stop, or a restart raced it):
        replicas of a stopped service with no active deployment that may still run."""
        active = sa.select(Deployment.id).where(
            Deployment.service_id == Service.id, Deployment.status.in_(ACTIVE_STATUSES)
        )
        stopped_leftover = sa.and_(
            Service.status == "stopped",
            ~active.exists(),
            sa.or_(Replica.status != "failed", Replica.keep_running.is_(True)),
        )
        async with self.db.session(write=False) as session:
            rows = await session.execute(
                sa.select(Replica, Service, Environment)
                .join(Service, Service.id == Replica.service_id)
                .join(Environment, Environment.id == Service.environment_id)
                .where(
                    sa.or_(Service.deleted_at.is_not(None), stopped_leftover),
                    Replica.status.in_(("pending", "starting", "running", "failed")),
                )
            )
            doomed = list(rows)
        services = {service.id: (service, env) for _, service, env in doomed}
        for service, env in services.values():
            driver = self._driver(env)
            if driver is not None:
                await driver.unroute(service.id, dict(service.driver_config or {}))
        for replica, service, env in doomed:
            driver = self._driver(env)
            code = await driver.terminate(replica_info(replica), DELETED_GRACE) if driver else None
            async with self.db.session() as session:
                row = await session.get(Replica, replica.id, with_for_update=True)
                if row is None or row.status in ("stopped", "stopping"):
                    continue
                row.keep_running = False
                row.exit_code = code
                to = "stopping" if row.status in ("starting", "running") else "stopped"
                why = "deleted" if service.deleted_at is not None else "stopped"
                await replicas.transition(
                    session, row, to, actor=ENGINE, reason=f"service {service.name} {why}"
                )
                if to == "stopping":
                    await replicas.transition(session, row, "stopped", actor=ENGINE)

    async def _finish_abandoned_stops(self) -> None:
        """A replica left in `stopping` (its worker died while draining it) is stopped here."""
        cutoff = utcnow() - timedelta(seconds=STOPPING_ABANDONED)
        async with self.db.session(write=False) as session:
            stale = list(
                await session.execute(
                    sa.select(Replica, Environment)
                    .join(Service, Service.id == Replica.service_id)
                    .join(Environment, Environment.id == Service.environment_id)
                    .where(Replica.status == "stopping", Replica.updated_at < cutoff)
                )
            )
        for replica, env in stale:
            driver = self._driver(env)
            code = (
                await driver.terminate(replica_info(replica), ABANDONED_GRACE) if driver else None
            )
            async with self.db.session() as session:
                row = await session.get(Replica, replica.id, with_for_update=True)
                if row is not None and row.status == "stopping":
                    row.exit_code = code
                    await replicas.transition(
                        session, row, "stopped", actor=ENGINE, reason="stop finished by supervisor"
                    )

    async def _sample(self) -> None:
        for replica, service, driver in await self._replicas(("running",)):
            figures = driver.sample(replica_info(replica))
            if figures is None:
                continue
            async with self.db.session() as session:
                await session.execute(
                    sa.update(Replica)
                    .where(Replica.id == replica.id)
                    .values(cpu_percent=figures.cpu_percent, memory_mb=figures.memory_mb)
                    .execution_options(synchronize_session=False)
                )
            if replica.enforcement != "cgroup":
                await self._check_memory(replica, service, driver, figures.memory_mb)

    # -- replica lifecycle: liveness, memory limit, giving up (replicas/lifecycle.py) ------

    async def _fail(
        self, session: AsyncSession, row: Replica, service: Service, reason: str
    ) -> str | None:
        """Mark the replica failed for `reason`: due for a restart after its backoff, or, after
        max_restarts within the window, given up (it stays failed). Returns the give-up reason."""
        rules = policy(service)
        recent = await _restarts_within(session, row.id, rules.restart_window)
        row.restart_reason = reason[:500]
        row.memory_over_since = None
        gave_up = None
        if lifecycle.give_up(recent, rules.max_restarts):
            gave_up = lifecycle.given_up_reason(recent, rules.restart_window, reason)
            row.keep_running = False
            row.next_restart_at = None
            row.restart_reason = gave_up
        else:
            row.next_restart_at = utcnow() + timedelta(seconds=backoff(row.restart_count))
        if row.status not in ("failed", "stopped"):
            await replicas.transition(
                session, row, "failed", actor=ENGINE, reason=gave_up or reason
            )
        return gave_up

    async def _stop_and_fail(
        self, replica: Replica, service: Service, driver: Driver, reason: str
    ) -> None:
        """A live replica that must go (liveness, memory): out of the router, failed with the
        reason, its process stopped; the crash path restarts it after its backoff."""
        async with self.db.session() as session:
            row = await session.get(Replica, replica.id, with_for_update=True)
            if row is None or row.status != "running" or row.pid != replica.pid:
                return  # someone else got there first (another worker, a rollout)
            row.health = "unhealthy"
            gave_up = await self._fail(session, row, service, reason)
        log.warning(
            "replica restarted by the supervisor",
            replica=str(replica.id),
            service=service.name,
            reason=reason,
        )
        self.adopted.discard(replica.id)
        await self._route(service, driver)
        grace = float((service.driver_config or {}).get("grace_seconds", 10.0))
        stop = driver.terminate(replica_info(replica), grace)
        self.tasks.spawn(("stop", replica.id, replica.pid), stop)  # one per process
        if gave_up:
            await self._gave_up(replica.id, service, gave_up)

    async def _check_liveness(self) -> None:
        """Restart live replicas whose last `liveness_failures` health checks all failed."""
        async with self.db.session(write=False) as session:
            rows = await _liveness_candidates(session)
            wanted = {r.id: policy(s).liveness_failures for r, s, _ in rows}
            wanted = {rid: n for rid, n in wanted.items() if n > 0}
            if not wanted:
                return
            checks = await _recent_checks(session, rows, wanted)
        for replica, service, environment in rows:
            n = wanted.get(replica.id, 0)
            reason = lifecycle.liveness_failure(checks.get(replica.id, []), n) if n else None
            driver = self._driver(environment)
            if reason is not None and driver is not None:
                await self._stop_and_fail(replica, service, driver, reason)

    async def _check_memory(
        self, replica: Replica, service: Service, driver: Driver, memory_mb: float
    ) -> None:
        """Sampling enforcement: start, keep or clear the over-limit clock; restart a replica
        over its memory_mb for longer than the grace period."""
        rules = policy(service)
        verdict = lifecycle.memory_verdict(
            memory_mb,
            service.memory_mb,
            replica.memory_over_since,
            utcnow(),
            rules.memory_grace_seconds,
        )
        if verdict.reason is not None:
            await self._stop_and_fail(replica, service, driver, verdict.reason)
            return
        if verdict.over_since != replica.memory_over_since:
            async with self.db.session() as session:
                await session.execute(
                    sa.update(Replica)
                    .where(Replica.id == replica.id, Replica.status == "running")
                    .values(memory_over_since=verdict.over_since)
                    .execution_options(synchronize_session=False)
                )

    async def _gave_up(self, replica_id: uuid.UUID, service: Service, reason: str) -> None:
        """A replica was given up: the service is degraded (others live) or failed (none);
        the alert goes to every active channel."""
        async with self.db.session() as session:
            live = await session.scalar(
                sa.select(sa.func.count())
                .select_from(Replica)
                .where(
                    Replica.service_id == service.id,
                    Replica.keep_running.is_(True),
                    Replica.status.in_(("starting", "running", "failed")),
                )
            )
            outcome = lifecycle.service_outcome(int(live or 0))
            svc = await session.get(Service, service.id, with_for_update=True)
            if outcome == "failed" and svc is not None and svc.status == "running":
                await services.transition(
                    session,
                    svc,
                    "failed",
                    actor=ENGINE,
                    reason=f"no replica left running: replica {str(replica_id)[:8]} {reason}"[:500],
                )
        still = int(live or 0)
        text = f"{service.name} is {outcome}: replica {str(replica_id)[:8]} {reason}; " + (
            f"{still} replica(s) still running" if still else "no replica left running"
        )
        log.error("replica given up", service=service.name, replica=str(replica_id), text=text)
        message = {
            "event": f"service_{outcome}",
            "service": service.name,
            "status": outcome,
            "replica": str(replica_id),
            "reason": reason,
            "text": text,
        }
        try:
            await notify(self.db, message)
        except Exception as exc:  # an alert that cannot go out must not stop supervision
            log.error("lifecycle alert failed", service=service.name, exc_info=exc)


def policy(service: Service) -> SupervisedConfig:
    """The service's lifecycle settings (its driver_config; defaults where unset or invalid)."""
    try:
        return SupervisedConfig.model_validate(service.driver_config or {})
    except ValidationError:
        return SupervisedConfig()


def _restarted(replica: Replica) -> str:
    """The reason of a replica's failed -> running after a restart."""
    if replica.restart_reason:
        return f"restarted after {replica.restart_reason}"[:500]
    return "restarted"


async def _restarts_within(session: AsyncSession, replica_id: uuid.UUID, window: float) -> int:
    """How many times the replica was started again (failed -> starting) within the window."""
    since = utcnow() - timedelta(seconds=window)
    count = await session.scalar(
        sa.select(sa.func.count())
        .select_from(StatusHistory)
        .where(
            StatusHistory.entity_type == "replica",
            StatusHistory.entity_id == replica_id,
            StatusHistory.from_status == "failed",
            StatusHistory.to_status == "starting",
            StatusHistory.changed_at >= since,
        )
    )
    return int(count or 0)


async def _liveness_candidates(
    session: AsyncSession,
) -> list[tuple[Replica, Service, Environment]]:
    """Live replicas whose checks may get them restarted: not of a stopped service (its stop
    may not be carried out yet) nor of one with an active deployment (a stop, or a rollback
    whose data restore makes the release being left fail its checks)."""
    active = sa.select(Deployment.id).where(
        Deployment.service_id == Service.id, Deployment.status.in_(ACTIVE_STATUSES)
    )
    rows = await session.execute(
        sa.select(Replica, Service, Environment)
        .join(Service, Service.id == Replica.service_id)
        .join(Environment, Environment.id == Service.environment_id)
        .where(
            Replica.status == "running",
            Replica.keep_running.is_(True),
            Replica.started_at.is_not(None),
            Service.deleted_at.is_(None),
            Service.status != "stopped",
            ~active.exists(),
            Environment.driver.in_(registry.supervised()),
        )
        .order_by(Service.name, Replica.id)
    )
    return [(r, s, e) for r, s, e in rows]


async def _recent_checks(
    session: AsyncSession, rows: list[Any], wanted: dict[uuid.UUID, int]
) -> dict[uuid.UUID, list[lifecycle.CheckResult]]:
    """Each replica's newest `wanted[id]` health checks since it last started (and settled),
    newest first, in one query over a bounded stretch of recent checks."""
    now = utcnow()
    since: dict[str, datetime] = {}
    for replica, service, _env in rows:
        n = wanted.get(replica.id, 0)
        if n <= 0:
            continue
        # Checks older than twice the time n probes take (plus slack) are never the newest n.
        interval = parse_health(service.health_check).replica_interval
        lookback = now - timedelta(seconds=2 * (n + 1) * interval + 10)
        settled = replica.started_at + timedelta(seconds=LIVENESS_SETTLE)
        since[f"replica:{replica.id}"] = max(settled, lookback)
    if not since:
        return {}
    rank = (
        sa.func.row_number()
        .over(partition_by=HealthCheck.target, order_by=HealthCheck.timestamp.desc())
        .label("rank")
    )
    ranked = (
        sa.select(
            HealthCheck.target,
            HealthCheck.ok,
            HealthCheck.http_status,
            HealthCheck.detail,
            HealthCheck.timestamp,
            rank,
        )
        .where(HealthCheck.target.in_(list(since)), HealthCheck.timestamp >= min(since.values()))
        .subquery()
    )
    found = await session.execute(
        sa.select(
            ranked.c.target, ranked.c.ok, ranked.c.http_status, ranked.c.detail, ranked.c.timestamp
        )
        .where(ranked.c.rank <= max(wanted.values()))
        .order_by(ranked.c.target, ranked.c.timestamp.desc())
    )
    out: dict[uuid.UUID, list[lifecycle.CheckResult]] = {}
    for target, ok, code, detail, at in found:
        if at >= since[target]:
            replica_id = uuid.UUID(target.split(":", 1)[1])
            out.setdefault(replica_id, []).append(lifecycle.CheckResult(ok, code, detail))
    return out
