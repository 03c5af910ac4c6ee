"""The worker: runs the background loops and jobs that capabilities register.

Each capability module listed in CAPABILITIES declares its own loops (`loops(rt)` returning
`core.loops.Loop`s: name, interval, once-per-slot or per-worker). The worker builds one runtime
(store, settings, this process's leases and task bookkeeping), runs every one-shot job, starts
every periodic loop, and on stop cancels the loops and every task they started.
A role `api` runs no loops; `all` and `worker` run them all. docs/architecture.md lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any

from pilothouse.config import MASTER_KEY_FILE, Settings
from pilothouse.core import keys
from pilothouse.core.db import Database
from pilothouse.core.leases import WORKER_ID, Leases
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime, run_loop, runtime_loops

log = get_logger("pilothouse.worker")

#: The registration lines: one module per capability with background work, in start order.
CAPABILITIES = (
    "pilothouse.nodes.loops",
    "pilothouse.deployments.runner",
    "pilothouse.healthchecks.loops",
    "pilothouse.backups.loops",
    "pilothouse.certificates.loops",
    "pilothouse.deployments.archive",
    "pilothouse.artifacts.pruning",
    "pilothouse.alerts.loops",
    "pilothouse.metrics.loops",
    "pilothouse.web.loops",
    "pilothouse.metrics.scrape",
    "pilothouse.findings.loops",
    "pilothouse.autoscaling.loops",
)


def registered(rt: Runtime) -> list[Loop]:
    """Every loop and job the capabilities declare for this runtime."""
    found = runtime_loops(rt)
    for module in CAPABILITIES:
        found.extend(importlib.import_module(module).loops(rt))
    return found


class Worker:
    def __init__(self, db: Database, settings: Settings, *, worker_id: str = WORKER_ID) -> None:
        self.rt = Runtime(db, settings, Leases(db, owner=worker_id, seconds=settings.lease_seconds))
        # Alerts and probes open sealed values (channel settings, dependency URLs).
        keys.use(settings.master_key, settings.data_dir / MASTER_KEY_FILE)
        self.loops: list[Loop] = []
        self.running: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        self.loops = registered(self.rt)
        for job in (loop for loop in self.loops if loop.every is None):
            try:
                await job.run()
            except Exception as exc:  # a failed start-up job must not keep the loops down
                log.error("start-up job failed", job=job.name, exc_info=exc)
        overrides = self.rt.settings.loop_intervals
        for loop in self.loops:
            if loop.every is not None:
                every = float(overrides.get(loop.name, loop.every))
                self.running.append(asyncio.create_task(run_loop(loop, self.rt.leases, every)))
        log.info(
            "worker started",
            worker=self.rt.leases.owner,
            loops=[loop.name for loop in self.loops],
        )

    async def stop(self) -> None:
        for task in self.running:
            task.cancel()
        for task in self.running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.rt.tasks.cancel_all()
