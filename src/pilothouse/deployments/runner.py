"""The release capability's background work (registered in worker.CAPABILITIES).

- `deployments.restore_router` (once at start): nginx serves what the store says is live;
- `deployments.run` (every 0.25 s, every worker): claims pending deployments (oldest first) by
  lease and carries each out in its own task;
- `deployments.reconcile` (every 2 s, every worker): deployments whose worker died (lease
  expired) are taken over and failed as "interrupted", their service restored; so a dead
  worker's deployment is taken over within PILOTHOUSE_LEASE_SECONDS + 2 s of its death;
- `deployments.supervise` (every 1 s, every worker): see deployments/supervisor.py.

When the worker stops, the engine lets go of its drivers' relays and listing channels and of its
connections to other nodes (`Engine.close`; the replicas go on).
"""

from __future__ import annotations

import sqlalchemy as sa

from pilothouse.core.clock import utcnow
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime, Tasks
from pilothouse.deployments.engine import Engine
from pilothouse.deployments.models import Deployment
from pilothouse.deployments.supervisor import STATS_EVERY, Supervisor

log = get_logger("pilothouse.worker")

RUN_EVERY = 0.25
RECONCILE_EVERY = 2.0
SUPERVISE_EVERY = 1.0


class Runner:
    """Picks pending deployments for this worker and reconciles interrupted ones."""

    def __init__(self, engine: Engine, tasks: Tasks) -> None:
        self.engine = engine
        self.tasks = tasks

    async def run_pending(self) -> None:
        """Claim pending deployments (oldest first) and carry each out."""
        now = utcnow()
        async with self.engine.db.session(write=False) as session:
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
            key = ("deployment", dep_id)
            if key in self.tasks or not await self.engine.claim(dep_id):
                continue
            self.tasks.spawn(key, self.engine.run(dep_id))

    async def reconcile(self) -> None:
        for dep_id in await self.engine.reconcile_interrupted():
            log.warning("reconciled interrupted deployment", deployment=str(dep_id))


def loops(rt: Runtime) -> list[Loop]:
    settings = rt.settings
    engine = Engine(
        rt.db,
        rt.data_dir,
        worker_id=rt.leases.owner,
        lease_seconds=rt.leases.seconds,
        master_key=settings.master_key,
        pre_deploy_hooks=rt.hooks("pre_deploy"),
        data_restore_hooks=rt.hooks("data_restore"),
        pre_start_checks=rt.hooks("pre_start"),  # the findings capability's security gate
        node_name=settings.node_name,
        container_engine=settings.container_engine,
        container_runtime=settings.container_runtime or None,
    )
    engine.event_hooks = rt.hooks("deployment_event")  # the alerts capability fills it
    rt.at_stop(engine.close)
    runner = Runner(engine, rt.tasks)
    stats_every = settings.loop_intervals.get("deployments.sample", STATS_EVERY)
    supervisor = Supervisor(engine, rt.tasks, stats_every=float(stats_every))
    return [
        Loop("deployments.restore_router", supervisor.restore_router, None),
        Loop("deployments.run", runner.run_pending, RUN_EVERY),
        Loop("deployments.reconcile", runner.reconcile, RECONCILE_EVERY),
        Loop("deployments.supervise", supervisor.supervise, SUPERVISE_EVERY),
    ]
