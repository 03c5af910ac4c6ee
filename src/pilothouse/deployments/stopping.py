"""Carrying out a `stop` deployment (`pilothouse service stop`; services/lifecycle.py records it
and has already marked the service `stopped`). Runs in the release engine, under the
deployment's lease, so no deploy of the service can run at the same time.

1. Every replica of the service is released from supervision in one transaction
   (keep_running off): the crash supervisor restarts none of them from here on; a crashed one
   waiting for its restart is `stopped` at once.
2. Process driver (and any driver that supervises replicas): the router entry is removed (nginx
   stops listening on the service's port at its graceful reload, requests in flight finish),
   then each live replica drains for the service's `drain_seconds`, gets SIGTERM, and SIGKILL
   after `grace_seconds`; each is recorded stopping -> stopped with its exit code.
   Command driver: the service's `stop_command` runs, like its deploy command.
3. The deployment succeeds; the artifact stays the live release, which `service start` brings
   back.

A failure leaves the service `stopped` (there is no automatic rollback of a stop); the
supervisor stops what is left of its replicas.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pilothouse.core.logging import get_logger
from pilothouse.core.store import unreachable
from pilothouse.drivers.base import Driver, ReplicaInfo, RolloutFailed
from pilothouse.replicas import service as replicas
from pilothouse.replicas.models import Replica
from pilothouse.services import service as services

if TYPE_CHECKING:
    from pilothouse.core.db import Database
    from pilothouse.deployments.engine import DbEvents, Engine, Loaded

log = get_logger("pilothouse.engine")

#: Replicas a stop takes down (with a process that may run).
LIVE = ("pending", "starting", "running")
REASON = "service stopped"


async def release_replicas(db: Database, service_id: uuid.UUID, actor_name: str) -> list[Replica]:
    """Step 1: keep_running off for every replica of the service that may run or be restarted;
    the crashed ones waiting for a restart (and pending ones, never started) become `stopped`.
    Returns the live replicas left to stop (starting, running)."""
    from pilothouse.deployments.engine import ENGINE

    live: list[Replica] = []
    async with db.session() as session:
        rows = await session.scalars(
            sa.select(Replica)
            .where(
                Replica.service_id == service_id,
                sa.or_(
                    Replica.status.in_(LIVE),
                    sa.and_(Replica.status == "failed", Replica.keep_running.is_(True)),
                ),
            )
            .order_by(Replica.created_at)
            .with_for_update()
        )
        for row in rows:
            row.keep_running = False
            row.next_restart_at = None
            if row.status in ("pending", "failed"):
                await replicas.transition(
                    session, row, "stopped", actor=ENGINE, reason=f"{REASON} by {actor_name}"
                )
            else:
                live.append(row)
    return live


async def _stop_one(
    driver: Driver, replica: ReplicaInfo, drain: float, grace: float, events: DbEvents
) -> None:
    """Drain, SIGTERM, SIGKILL after `grace`; recorded stopping -> stopped."""
    await events.replica_changed(replica.id, "stopping", reason=REASON, keep_running=False)
    if drain:
        await asyncio.sleep(drain)
    code = await driver.terminate(replica, grace)
    await events.replica_changed(replica.id, "stopped", reason=REASON, exit_code=code)


async def carry_out_stop(engine: Engine, loaded: Loaded, events: DbEvents) -> str:
    """Stop the service's replicas and its router entry; returns the deployment's outcome."""
    from pilothouse.deployments.engine import replica_info

    dep, svc = loaded.deployment, loaded.service
    started = time.monotonic()
    try:
        driver = engine.driver_for(loaded.environment)
        await engine._move(dep.id, "building", reason=f"{driver.name} driver")
        await events.log(
            f"stop of {svc.name} {dep.version} by {dep.operator} ({driver.name} driver)"
        )
        await engine._move(dep.id, "deploying")
        config = engine._config(loaded, driver)
        live = [replica_info(r) for r in await release_replicas(engine.db, svc.id, dep.operator)]
        if driver.supervised:
            await driver.unroute(svc.id, dict(svc.driver_config or {}))
            if services.router_port(svc.driver_config) is not None:
                await events.log("router entry removed: the service's port is closed")
            drain = float(getattr(config, "drain_seconds", 0.0) or 0.0)
            grace = float(getattr(config, "grace_seconds", 10.0))
            await events.log(
                f"stopping {len(live)} replica(s): drain {drain:g}s, then SIGTERM, "
                f"SIGKILL after {grace:g}s"
            )
            await asyncio.gather(*(_stop_one(driver, r, drain, grace, events) for r in live))
        else:
            command = getattr(config, "stop_command", None)
            if not command:
                raise RolloutFailed("the service has no stop_command in its driver_config")
            timeout = float(getattr(config, "timeout", 600.0))
            await engine._command(events, command, "stop", timeout, loaded)
    except RolloutFailed as exc:
        return await engine._fail(loaded, events, exc.reason)
    except Exception as exc:  # a bug or an outage must not leave the deployment deploying
        if (lost := unreachable(exc)) is not None:
            return await engine._store_lost(dep.id, lost)
        log.error("stop crashed", deployment=str(dep.id), exc_info=exc)
        return await engine._fail(loaded, events, f"internal error: {type(exc).__name__}: {exc}")
    seconds = time.monotonic() - started
    await events.log(
        f"{svc.name} is stopped ({len(live)} replica(s) stopped in {seconds:.1f}s); "
        f"`pilothouse service start {svc.name}` brings {dep.version} back"
    )
    await engine._move(
        dep.id,
        "success",
        reason=REASON,
        deploy_time_ms=int(seconds * 1000),
        instances_deployed=0,
    )
    return "success"
