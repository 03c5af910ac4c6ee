"""Connections and relays are let go of when the worker stops: the deployments and nodes
capabilities register their cleanup with the runtime (`Runtime.at_stop`, run by
`Tasks.cancel_all`), and a transport replaced because its node's access changed is closed."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from pilothouse.config import Settings
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.core.loops import Runtime, Tasks
from pilothouse.deployments import runner
from pilothouse.drivers.process import ProcessDriver
from pilothouse.drivers.transport import LocalTransport, NodeAccess, TransportPool
from pilothouse.nodes import loops as node_loops


async def test_cancel_all_runs_each_stop_step_once_even_after_one_fails() -> None:
    tasks = Tasks()
    ran: list[str] = []

    async def failing() -> None:
        ran.append("failing")
        raise RuntimeError("boom")

    async def closing() -> None:
        ran.append("closing")

    running = asyncio.Event()

    async def work() -> None:
        running.set()
        await asyncio.sleep(60)

    tasks.spawn("work", work())
    await running.wait()
    tasks.at_stop(failing)
    tasks.at_stop(closing)
    await tasks.cancel_all()
    assert ran == ["failing", "closing"] and "work" not in tasks
    await tasks.cancel_all()
    assert ran == ["failing", "closing"]


async def test_the_worker_stop_closes_drivers_and_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    pool_close, driver_close = TransportPool.close, ProcessDriver.close

    async def close_pool(self: TransportPool) -> None:
        closed.append("pool")
        await pool_close(self)

    async def close_driver(self: ProcessDriver, timeout: float = 5.0) -> None:
        closed.append(type(self).__name__)
        await driver_close(self, timeout)

    monkeypatch.setattr(TransportPool, "close", close_pool)
    monkeypatch.setattr(ProcessDriver, "close", close_driver)
    settings = Settings(data_dir=tmp_path / "data", database_url="sqlite://", role="worker")
    db = Database(settings.database_url)
    try:
        rt = Runtime(db, settings, Leases(db, owner="w1"))
        runner.loops(rt)
        node_loops.loops(rt)
        assert closed == []
        await rt.tasks.cancel_all()
    finally:
        await db.dispose()
    # the engine's pool and the node watch's pool; the process and container drivers
    assert sorted(closed) == ["ContainerDriver", "ProcessDriver", "pool", "pool"]


class Recording(LocalTransport):
    closed = 0

    async def close(self) -> None:
        self.closed += 1


async def test_a_transport_replaced_because_its_access_changed_is_closed() -> None:
    made: list[Recording] = []

    def factory(access: NodeAccess) -> Recording:
        made.append(Recording(access.name, access.address))
        return made[-1]

    pool = TransportPool(factory)
    access = NodeAccess(uuid.uuid4(), "n1", "ssh", "10.0.0.1", "root")
    first = pool.get(access)
    assert pool.get(access) is first
    second = pool.get(replace(access, address="10.0.0.2"))
    assert second is not first
    for _ in range(50):
        if made[0].closed:
            break
        await asyncio.sleep(0.01)
    assert made[0].closed == 1 and made[1].closed == 0
    await pool.close()
    assert made[1].closed == 1
