"""A route from the store (the supervisor's, after a crash or restart) while a rollout runs
must not put back a replica the rollout already took out of the router to stop it: real
replica processes, a router that records what it was told and when."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pilothouse.drivers.base import RolloutPlan
from pilothouse.drivers.process import ProcessDriver, is_alive
from tests.drivers.test_process_rollout import Recorder, spec

CONFIG = {"router": "nginx", "router_port": 18080, "drain_seconds": 0}


class Router:
    """Each change applied, with when (a reload takes a moment)."""

    def __init__(self) -> None:
        self.applied: list[tuple[float, set[str]]] = []

    async def set_backends(
        self, service_key: str, listen_port: int, backends: Sequence[str | int]
    ) -> None:
        await asyncio.sleep(0.02)
        self.applied.append((time.monotonic(), {str(b) for b in backends}))

    async def remove(self, service_key: str) -> None:
        pass


class Stopping(Recorder):
    """The Recorder, noting when each replica began to stop."""

    def __init__(self, known: dict[uuid.UUID, dict[str, Any]] | None = None) -> None:
        super().__init__(known)
        self.stopping: dict[uuid.UUID, float] = {}

    async def replica_changed(self, replica_id: uuid.UUID, to: str, **fields: Any) -> None:
        if to == "stopping":
            self.stopping[replica_id] = time.monotonic()
        await super().replica_changed(replica_id, to, **fields)


async def test_store_route_during_rollout_keeps_retired_replicas_out(tmp_path: Path) -> None:
    router = Router()
    driver = ProcessDriver(tmp_path, router)
    first, second = Stopping(), Stopping()
    service = spec("v1.0.0", 3, **CONFIG)
    try:
        out = await driver.rollout(RolloutPlan(service, [], uuid.uuid4()), first)
        v1 = [first.info(r) for r in out.replicas]
        second.replicas = {r: dict(first.replicas[r]) for r in out.replicas}
        plan = RolloutPlan(spec("v2.0.0", 3, **CONFIG), v1, uuid.uuid4())
        done = False

        async def supervisor() -> None:
            """Routes what a store read a moment earlier said was running (v1 and v2 alike)."""
            while not done:
                running = [
                    f"127.0.0.1:{r['port']}"
                    for r in list(second.replicas.values())
                    if r["status"] in ("running", "stopping", "stopped")
                ]
                await driver.route(service.service_id, CONFIG, running)

        routing = asyncio.create_task(supervisor())
        out2 = await driver.rollout(plan, second)
        if out2.cleanup is not None:
            await out2.cleanup
        done = True
        await routing
        for at, backends in router.applied:
            for replica in v1:
                began = second.stopping.get(replica.id)
                if began is not None and began < at:
                    assert f"127.0.0.1:{replica.port}" not in backends, "routed while stopping"
    finally:
        for replica in [*first.replicas.values(), *second.replicas.values()]:
            if is_alive(replica.get("pid"), replica.get("process_started_at")):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(replica["pid"], signal.SIGKILL)


class StaleRead(Recorder):
    """The Recorder; when the first replica of `version` turns running, a supervisor's store
    read taken just before it (which does not list it yet) is routed once the rollout has put
    that replica in the router."""

    def __init__(self, driver: ProcessDriver, router: Router, version: str) -> None:
        super().__init__()
        self.driver, self.router, self.version = driver, router, version
        self.stale: asyncio.Task[None] | None = None
        self.new_backend = ""

    async def replica_changed(self, replica_id: uuid.UUID, to: str, **fields: Any) -> None:
        replica = self.replicas[replica_id]
        if to == "running" and self.stale is None and replica["version"] == self.version:
            read_at = time.monotonic()
            running = [
                f"127.0.0.1:{r['port']}" for r in self.replicas.values() if r["status"] == "running"
            ]
            self.new_backend = f"127.0.0.1:{replica['port']}"
            self.stale = asyncio.create_task(self._route_later(running, read_at))
        await super().replica_changed(replica_id, to, **fields)

    async def _route_later(self, running: list[str], read_at: float) -> None:
        deadline = time.monotonic() + 30  # a rollout that never routes it fails the test
        while not any(self.new_backend in backends for _, backends in self.router.applied):
            assert time.monotonic() < deadline, "the rollout never routed the new replica"
            await asyncio.sleep(0.005)
        await self.driver.route(uuid.UUID(int=7), CONFIG, running, read_at=read_at)


async def test_a_store_route_read_before_a_replica_was_running_keeps_it_routed(
    tmp_path: Path,
) -> None:
    """The supervisor reads the store, then routes: a replica the rollout made running and
    routed in between is not in that read, and must not be dropped by it."""
    router = Router()
    driver = ProcessDriver(tmp_path, router)
    first = Recorder()
    try:
        out = await driver.rollout(
            RolloutPlan(spec("v1.0.0", 2, **CONFIG), [], uuid.uuid4()), first
        )
        v1 = [first.info(r) for r in out.replicas]
        second = StaleRead(driver, router, "v2.0.0")
        second.replicas = {r: dict(first.replicas[r]) for r in out.replicas}
        plan = RolloutPlan(spec("v2.0.0", 2, **CONFIG), v1, uuid.uuid4())
        out2 = await driver.rollout(plan, second)
        assert second.stale is not None
        await second.stale
        if out2.cleanup is not None:
            await out2.cleanup
        first_in = next(
            i for i, (_, backends) in enumerate(router.applied) if second.new_backend in backends
        )
        assert all(second.new_backend in b for _, b in router.applied[first_in:]), [
            sorted(b) for _, b in router.applied
        ]
    finally:
        for replica in [*first.replicas.values(), *second.replicas.values()]:
            if is_alive(replica.get("pid"), replica.get("process_started_at")):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(replica["pid"], signal.SIGKILL)
