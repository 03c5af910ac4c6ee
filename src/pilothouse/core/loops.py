"""The loop registry: how a capability declares its background work, and what a worker gives it.

A capability module (listed once in `worker.CAPABILITIES`) exposes
`loops(rt: Runtime) -> list[Loop]`. Each `Loop` has a name, what to run, and how often:

- `every=None`: a one-shot job run once when the worker starts, before any periodic loop;
- `once=False`: runs on every worker, every `every` seconds (work it picks is claimed per row,
  e.g. a deployment lease);
- `once=True`: runs once per slot of `every` seconds across all workers sharing the store: each
  worker wakes at the slot's start and the one that claims `(name, "all", slot)` in job_slots
  runs it (see core/leases.py).

`Tasks` is the one place that keeps the tasks loops start (a deployment, a restart, a backup):
keyed so the same work is not started twice, errors logged, cancelled on stop. A capability
that holds something to let go of when the worker stops (connections, relays) registers a stop
step with `Runtime.at_stop`; `Tasks.cancel_all` (the worker's stop) runs each once, after the
tasks are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases, slot_start
from pilothouse.core.logging import get_logger
from pilothouse.core.store import unreachable

if TYPE_CHECKING:
    from pilothouse.config import Settings

log = get_logger("pilothouse.worker")


@dataclass(frozen=True)
class Loop:
    """One registered loop or one-shot job."""

    name: str  # "<capability>.<what>", also the job name of its slot claims
    run: Callable[[], Awaitable[Any]]
    every: float | None  # seconds between runs; None: once at start
    once: bool = False  # once per slot across all workers (claims a job slot)


class Tasks:
    """Tasks started by loops, keyed by what they work on (one bookkeeping for all of them)."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}
        self._at_stop: list[Callable[[], Awaitable[Any]]] = []

    def __contains__(self, key: Hashable) -> bool:
        return key in self._tasks

    def count(self, kind: str) -> int:
        """How many tasks whose key is a tuple starting with `kind` are running."""
        return sum(1 for k in self._tasks if isinstance(k, tuple) and k and k[0] == kind)

    def spawn(self, key: Hashable, work: Coroutine[Any, Any, Any]) -> bool:
        """Start `work` under `key` unless a task with that key still runs (then False)."""
        if key in self._tasks:
            work.close()
            return False
        task = asyncio.create_task(work)
        self._tasks[key] = task

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.pop(key, None)
            failure = None if finished.cancelled() else finished.exception()
            if failure is not None and unreachable(failure) is not None:
                # Its lease runs out; reconciliation names the outage once the store is back.
                log.warning("background task stopped: the store is unreachable", task=str(key))
            elif failure is not None:
                log.error("background task failed", task=str(key), exc_info=failure)

        task.add_done_callback(done)
        return True

    def at_stop(self, step: Callable[[], Awaitable[Any]]) -> None:
        """Run `step` when the worker stops (after its tasks are cancelled), once."""
        self._at_stop.append(step)

    async def cancel_all(self) -> None:
        """Cancel every task, then run the stop steps (in registration order; one that fails
        is logged and the others still run)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        steps, self._at_stop = self._at_stop, []
        for step in steps:
            try:
                await step()
            except Exception as exc:
                log.error("stop step failed", step=getattr(step, "__qualname__", ""), exc_info=exc)


@dataclass
class Runtime:
    """What every capability's `loops()` receives: the store, settings, this process's leases,
    the task bookkeeping, and named hook lists one capability fills for another."""

    db: Database
    settings: Settings
    leases: Leases
    tasks: Tasks = field(default_factory=Tasks)
    _hooks: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    def at_stop(self, step: Callable[[], Awaitable[Any]]) -> None:
        """Let go of what a capability holds when the worker stops (see `Tasks.at_stop`)."""
        self.tasks.at_stop(step)

    def hooks(self, name: str) -> list[Any]:
        """The hook list `name` (the same list object for every caller), e.g. "pre_deploy":
        the backups capability appends to it, the release engine calls what it holds."""
        return self._hooks.setdefault(name, [])


async def run_loop(loop: Loop, leases: Leases, every: float) -> None:
    """Run `loop` every `every` seconds until cancelled; one failed pass never stops it."""
    last_slot = None
    while True:
        try:
            if not loop.once:
                await loop.run()
            else:
                slot = slot_start(utcnow(), timedelta(seconds=every))
                if slot != last_slot and await leases.claim_slot(loop.name, "all", slot):
                    log.debug("slot job", loop=loop.name, slot=slot.isoformat())
                    await loop.run()
                last_slot = slot
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if unreachable(exc) is None:  # an outage is logged once, by the store's health
                log.error("worker loop failed", loop=loop.name, exc_info=exc)
        if loop.once:
            # Wake at the next slot's start, so every worker tries every slot.
            now = utcnow()
            following = slot_start(now, timedelta(seconds=every)) + timedelta(seconds=every)
            await asyncio.sleep(max((following - now).total_seconds(), 0.0) + 0.01)
        else:
            await asyncio.sleep(every)


#: Job slots are kept this long: a monthly claim (one SLA alert per month) must outlive its month.
SLOT_RETENTION = timedelta(days=35)


def runtime_loops(rt: Runtime) -> list[Loop]:
    """The runtime's own housekeeping (before the capabilities' loops)."""

    async def prune_slots() -> None:
        await rt.leases.prune_slots(utcnow() - SLOT_RETENTION)

    return [Loop("runtime.prune_slots", prune_slots, 3600.0, once=True)]
