"""Background loops of a pilothouse worker (`serve` with role all or worker).

- runner (every 0.25 s): claims pending deployments and carries each out in its own task;
- reconciler (every 2 s): deployments whose worker died (lease expired) are failed as
  "interrupted" and their service restored;
- supervisor (every 1 s): re-adopts live replicas by pid and start time, restarts crashed
  ones with exponential backoff (counted in restart_count) and refreshes CPU and memory figures;
- backups (every 10 s): reconciles interrupted backups, creates scheduled ones when their cron
  slot comes, retries failed ones when due, runs waiting ones, and claims drill and cleanup slots.
All coordination goes through the database, so several workers can share one PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pilothouse.alerts.service import notify
from pilothouse.backups import jobs as backup_jobs
from pilothouse.config import MASTER_KEY_FILE
from pilothouse.core import keys
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.logging import get_logger
from pilothouse.core.store import unreachable
from pilothouse.deployments.engine import ENGINE, Engine, replica_info, run_as_of
from pilothouse.deployments.models import Deployment
from pilothouse.drivers.process import (
    ProcessConfig,
    free_port,
    is_alive,
    register_child,
    spawn,
    stats,
    terminate,
)
from pilothouse.drivers.readiness import ReadinessSpec, wait_ready
from pilothouse.environments.models import Environment
from pilothouse.errors import Conflict
from pilothouse.healthchecks import service as health
from pilothouse.healthchecks.monitor import Monitor, MonitorSettings
from pilothouse.replicas import service as replicas
from pilothouse.replicas.models import Replica
from pilothouse.services.models import Service
from pilothouse.variables import service as variables

log = get_logger("pilothouse.worker")

BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
STATS_EVERY = 5.0
STOPPING_ABANDONED = 30.0


def backoff(restart_count: int) -> float:
    """Seconds before the next restart: 1, 2, 4, ... capped at 60."""
    return float(min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(restart_count, 0)))


class Worker:
    def __init__(
        self,
        db: Database,
        data_dir: Path,
        *,
        lease_seconds: float = 15.0,
        monitor: MonitorSettings | None = None,
        backups: backup_jobs.BackupContext | None = None,
        backup_concurrency: int = 1,
        master_key: str | None = None,
    ) -> None:
        self.db = db
        self.engine = Engine(db, data_dir, lease_seconds=lease_seconds, master_key=master_key)
        keys.use(master_key, data_dir / MASTER_KEY_FILE)  # alerts and probes open sealed values
        self.backups = backups
        self.backup_slots = asyncio.Semaphore(backup_concurrency)
        self.backup_tasks: dict[uuid.UUID, asyncio.Task[Any]] = {}
        self.housekeeping: set[asyncio.Task[Any]] = set()
        if backups is not None:
            self.engine.pre_deploy_hooks.append(backup_jobs.pre_deploy_hook(backups))
        self.monitor = Monitor(db, monitor) if monitor is not None else None
        self.loops: list[asyncio.Task[None]] = []
        self.running: dict[uuid.UUID, asyncio.Task[str]] = {}
        self.restarting: set[uuid.UUID] = set()
        self.adopted: set[uuid.UUID] = set()
        self._last_stats = 0.0

    async def start(self) -> None:
        await self._restore_router()
        loops: list[tuple[Any, float]] = [
            (self.run_pending, 0.25),
            (self.reconcile, 2.0),
            (self.supervise, 1.0),
        ]
        if self.monitor is not None:
            loops += [
                (self.probe, self.monitor.settings.tick),
                (self.monitor.remind, 30.0),
                (self.maintain_health, 300.0),
                (self.check_sla, 3600.0),
            ]
        if self.backups is not None:
            loops.append((self.backup_tick, 10.0))
        for loop, every in loops:
            self.loops.append(asyncio.create_task(self._every(loop, every)))
        log.info("worker started", worker=self.engine.worker_id)

    async def stop(self) -> None:
        tasks = [
            *self.loops,
            *self.running.values(),
            *self.backup_tasks.values(),
            *self.housekeeping,
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _every(self, fn: Any, seconds: float) -> None:
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad pass must not stop the loop
                if unreachable(exc) is None:  # an outage is logged once, by the store's health
                    log.error("worker loop failed", loop=fn.__name__, exc_info=exc)
            await asyncio.sleep(seconds)

    # -- deployments ----------------------------------------------------------------------

    async def run_pending(self) -> None:
        """Claim pending deployments (oldest first) and carry each out."""
        now = utcnow()
        async with self.db.session(write=False) as session:
            ids = list(
                await session.scalars(
                    sa.select(Deployment.id)
                    .where(
                        Deployment.status == "pending",
                        sa.or_(Deployment.lease_owner.is_(None), Deployment.lease_expires_at < now),
                    )
                    .order_by(Deployment.created_at)
                    .limit(20)
                )
            )
        for dep_id in ids:
            if dep_id in self.running or not await self.engine.claim(dep_id):
                continue
            task = asyncio.create_task(self.engine.run(dep_id))
            self.running[dep_id] = task
            task.add_done_callback(self._forget_deployment(dep_id))

    def _forget_deployment(self, dep_id: uuid.UUID) -> Any:
        def done(task: asyncio.Task[str]) -> None:
            self.running.pop(dep_id, None)
            failure = None if task.cancelled() else task.exception()
            if failure is not None and unreachable(failure) is not None:
                # Its lease runs out; reconciliation names the outage once the store is back.
                log.warning(
                    "deployment task stopped: the store is unreachable", deployment=str(dep_id)
                )
            elif failure is not None:
                log.error("deployment task failed", deployment=str(dep_id), exc_info=failure)

        return done

    def _forget_restart(self, replica_id: uuid.UUID) -> Any:
        def done(task: asyncio.Task[None]) -> None:
            self.restarting.discard(replica_id)
            if not task.cancelled() and task.exception() is not None:
                log.error("restart failed", replica=str(replica_id), exc_info=task.exception())

        return done

    async def probe(self) -> None:
        assert self.monitor is not None
        await self.monitor.tick(time.time())

    async def maintain_health(self) -> None:
        figures = await health.maintain(self.db)
        log.info("health maintenance", **figures)

    async def check_sla(self) -> None:
        for svc, report in await health.sla_breaches(self.db, utcnow()):
            message = {
                "event": "sla",
                "service": svc.name,
                "uptime_percent": round(report.uptime_percent, 3),
                "sla_target": report.sla_target,
                "text": f"{svc.name}: month-to-date uptime {report.uptime_percent:.3f}% is below "
                f"its SLA target {report.sla_target}%",
            }
            await notify(self.db, message)

    async def reconcile(self) -> None:
        for dep_id in await self.engine.reconcile_interrupted():
            log.warning("reconciled interrupted deployment", deployment=str(dep_id))

    # -- backups --------------------------------------------------------------------------

    async def backup_tick(self) -> None:
        """Reconcile, schedule, retry, then start what waits; drills and cleanup by slot."""
        ctx = self.backups
        assert ctx is not None
        now = utcnow()
        await backup_jobs.reconcile_interrupted(ctx)
        targets = await backup_jobs.enabled_targets(ctx)
        await backup_jobs.schedule_due(ctx, now, targets)
        await backup_jobs.retry_due(ctx, now)
        for backup_id in await backup_jobs.runnable(ctx):
            if backup_id in self.backup_tasks or self.backup_slots.locked():
                continue
            task = asyncio.create_task(self._run_backup(backup_id))
            self.backup_tasks[backup_id] = task
            task.add_done_callback(self._forget_backup(backup_id))
        for backup_id in await backup_jobs.drills_due(ctx, now, targets):
            self._housekeep(backup_jobs.drill_backup(ctx, backup_id))
        if await backup_jobs.cleanup_due(ctx, now):
            self._housekeep(self._cleanup())

    async def _run_backup(self, backup_id: uuid.UUID) -> None:
        assert self.backups is not None
        async with self.backup_slots:
            with contextlib.suppress(Conflict):  # another worker claimed it first
                await backup_jobs.run_backup(self.backups, backup_id)

    async def _cleanup(self) -> None:
        assert self.backups is not None
        figures = await backup_jobs.cleanup(self.backups)
        log.info("backup cleanup", **figures)

    def _housekeep(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.housekeeping.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self.housekeeping.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("backup job failed", exc_info=finished.exception())

        task.add_done_callback(done)

    def _forget_backup(self, backup_id: uuid.UUID) -> Any:
        def done(task: asyncio.Task[Any]) -> None:
            self.backup_tasks.pop(backup_id, None)
            if not task.cancelled() and task.exception() is not None:
                log.error("backup task failed", backup=str(backup_id), exc_info=task.exception())

        return done

    # -- replicas -------------------------------------------------------------------------

    async def _process_replicas(self, statuses: tuple[str, ...]) -> list[tuple[Replica, Service]]:
        async with self.db.session(write=False) as session:
            rows = await session.execute(
                sa.select(Replica, Service)
                .join(Service, Service.id == Replica.service_id)
                .join(Environment, Environment.id == Service.environment_id)
                .where(
                    Replica.status.in_(statuses),
                    Replica.keep_running.is_(True),
                    Service.deleted_at.is_(None),
                    Environment.driver == "process",
                )
            )
            return [(r, s) for r, s in rows.tuples()]

    async def _route(self, service: Service) -> None:
        cfg = ProcessConfig(**(service.driver_config or {}))
        if not (cfg.router and cfg.router_port):
            return
        async with self.db.session(write=False) as session:
            rows = await session.scalars(
                sa.select(Replica).where(
                    Replica.service_id == service.id,
                    Replica.status == "running",
                    Replica.keep_running.is_(True),
                )
            )
            ports = sorted(int(r.ports["http"]) for r in rows if r.ports.get("http"))
        await self.engine.router.set_backends(str(service.id), cfg.router_port, ports)

    async def _restore_router(self) -> None:
        """After a restart, make nginx serve what the database says is live."""
        async with self.db.session(write=False) as session:
            services = list(
                await session.scalars(
                    sa.select(Service).where(
                        Service.deleted_at.is_(None), Service.status == "running"
                    )
                )
            )
        for service in services:
            try:
                await self._route(service)
            except Exception as exc:
                log.error("router restore failed", service=service.name, exc_info=exc)

    async def supervise(self) -> None:
        now = utcnow()
        for replica, service in await self._process_replicas(("running",)):
            if is_alive(replica.pid, replica.process_started_at):
                if replica.id not in self.adopted:
                    self.adopted.add(replica.id)
                    log.info("replica adopted", replica=str(replica.id), pid=replica.pid)
                continue
            await self._mark_crashed(replica, service)
        for replica, service in await self._process_replicas(("failed",)):
            due = replica.next_restart_at is None or replica.next_restart_at <= now
            if due and replica.id not in self.restarting:
                self.restarting.add(replica.id)
                task = asyncio.create_task(self._restart(replica.id, service))
                task.add_done_callback(self._forget_restart(replica.id))
        await self._finish_abandoned_stops()
        await self._stop_deleted_services()
        loop_now = asyncio.get_running_loop().time()
        if loop_now - self._last_stats >= STATS_EVERY:
            self._last_stats = loop_now
            await self._refresh_stats()

    async def _stop_deleted_services(self) -> None:
        """Replicas of a deleted service are stopped and its router entry removed."""
        async with self.db.session(write=False) as session:
            rows = (
                await session.execute(
                    sa.select(Replica, Service)
                    .join(Service, Service.id == Replica.service_id)
                    .where(
                        Service.deleted_at.is_not(None),
                        Replica.status.in_(("pending", "starting", "running", "failed")),
                    )
                )
            ).tuples()
            doomed = list(rows)
        services = {service.id: service for _, service in doomed}
        for service in services.values():
            cfg = ProcessConfig(**(service.driver_config or {}))
            if cfg.router and cfg.router_port:
                await self.engine.router.remove(str(service.id))
        for replica, service in doomed:
            code = await terminate(replica.pid, replica.process_started_at, 10.0)
            async with self.db.session() as session:
                row = await session.get(Replica, replica.id, with_for_update=True)
                if row is None or row.status in ("stopped", "stopping"):
                    continue
                row.keep_running = False
                row.exit_code = code
                to = "stopping" if row.status in ("starting", "running") else "stopped"
                await replicas.transition(
                    session, row, to, actor=ENGINE, reason=f"service {service.name} deleted"
                )
                if to == "stopping":
                    await replicas.transition(session, row, "stopped", actor=ENGINE)

    async def _finish_abandoned_stops(self) -> None:
        """A replica left in `stopping` (its worker died while draining it) is stopped here."""
        cutoff = utcnow() - timedelta(seconds=STOPPING_ABANDONED)
        async with self.db.session(write=False) as session:
            stale = list(
                await session.scalars(
                    sa.select(Replica).where(
                        Replica.status == "stopping", Replica.updated_at < cutoff
                    )
                )
            )
        for replica in stale:
            code = await terminate(replica.pid, replica.process_started_at, 5.0)
            async with self.db.session() as session:
                row = await session.get(Replica, replica.id, with_for_update=True)
                if row is not None and row.status == "stopping":
                    row.exit_code = code
                    await replicas.transition(
                        session, row, "stopped", actor=ENGINE, reason="stop finished by supervisor"
                    )

    async def _mark_crashed(self, replica: Replica, service: Service) -> None:
        async with self.db.session() as session:
            row = await session.get(Replica, replica.id, with_for_update=True)
            if row is None or row.status != "running":
                return
            row.next_restart_at = utcnow() + timedelta(seconds=backoff(row.restart_count))
            await replicas.transition(session, row, "failed", actor=ENGINE, reason="process exited")
        log.warning("replica crashed", replica=str(replica.id), service=service.name)
        await self._route(service)

    async def _restart(self, replica_id: uuid.UUID, service: Service) -> None:
        """Start a crashed replica again (same version, a fresh port); back off if it fails."""
        now = utcnow()
        async with self.db.session() as session:
            claimed = await session.execute(
                sa.update(Replica)
                .where(
                    Replica.id == replica_id,
                    Replica.status == "failed",
                    Replica.keep_running.is_(True),
                    sa.or_(Replica.next_restart_at.is_(None), Replica.next_restart_at <= now),
                )
                .values(next_restart_at=now + timedelta(seconds=3600))
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                return
            row = await session.get(Replica, replica_id)
            assert row is not None
            info = replica_info(row)
        if not service.command:
            return
        cfg = ProcessConfig(**(service.driver_config or {}))
        port = free_port()
        log_path = (
            Path(info.log_path)
            if info.log_path
            else self.engine.data_dir / "replicas" / service.name / f"{replica_id}.log"
        )
        async with self.db.session(write=False) as session:
            env_row = await session.get(Environment, service.environment_id)
            assert env_row is not None
            delivery = await variables.for_deployment(
                session, self.engine.keyring(), env_row, service.id
            )
        spawned = spawn(
            service.command,
            port=port,
            version=info.version or "",
            env={**delivery.values, **cfg.env},
            secrets=delivery.secrets,
            log_path=log_path,
            cwd=cfg.cwd,
            run_as=run_as_of(env_row),
        )
        register_child(spawned)
        async with self.db.session() as session:
            row = await session.get(Replica, replica_id, with_for_update=True)
            assert row is not None
            row.pid, row.process_started_at, row.ports = (
                spawned.pid,
                spawned.started_at,
                {"http": port},
            )
            await replicas.transition(
                session, row, "starting", actor=ENGINE, reason="restart after crash"
            )
            count = row.restart_count
        ready = await wait_ready(
            ReadinessSpec(**(service.health_check or {})),
            "127.0.0.1",
            port,
            alive=lambda: is_alive(spawned.pid, spawned.started_at),
        )
        async with self.db.session() as session:
            row = await session.get(Replica, replica_id, with_for_update=True)
            assert row is not None
            if ready.ready:
                row.next_restart_at = None
                row.health = "healthy"
                await replicas.transition(session, row, "running", actor=ENGINE, reason="restarted")
            else:
                await terminate(spawned.pid, spawned.started_at, cfg.grace_seconds)
                row.next_restart_at = utcnow() + timedelta(seconds=backoff(count))
                await replicas.transition(session, row, "failed", actor=ENGINE, reason=ready.detail)
        if ready.ready:
            log.info("replica restarted", replica=str(replica_id), restarts=count)
            await self._route(service)

    async def _refresh_stats(self) -> None:
        for replica, _service in await self._process_replicas(("running",)):
            figures = stats(replica.pid, replica.process_started_at)
            if figures is None:
                continue
            async with self.db.session() as session:
                await session.execute(
                    sa.update(Replica)
                    .where(Replica.id == replica.id)
                    .values(cpu_percent=figures["cpu_percent"], memory_mb=figures["memory_mb"])
                    .execution_options(synchronize_session=False)
                )
