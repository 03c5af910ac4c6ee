"""A rollout's log lines written behind it (drivers/process.Deferred): the next replica starts
without waiting for the store, yet every line lands, in the order it was made; a replica's
records (`starting` with its pid, `running`, `stopping`...) are written before the call returns,
after what is queued; a store failure stops the rollout at its next call."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from pilothouse.drivers.base import Placing
from pilothouse.drivers.process import Deferred, defer
from pilothouse.drivers.transport import NodeAccess


class SlowStore:
    """Events whose writes wait until the test opens the gate; every write is remembered."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.written: list[str] = []
        self.fail: Exception | None = None

    async def _write(self, what: str) -> None:
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.written.append(what)

    async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None:
        await self._write(f"log {message}")

    async def log_many(self, messages: list[str], *, source: str) -> None:
        await self._write(f"lines {len(messages)}")

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        self.written.append("created")  # not behind the gate: its answer is needed at once
        return uuid.UUID(int=1)

    async def replica_changed(
        self, replica_id: uuid.UUID, to: str, *, reason: str | None = None, **fields: Any
    ) -> None:
        await self._write(to)


async def test_log_lines_are_written_behind_the_caller_in_their_order() -> None:
    store = SlowStore()
    events = Deferred(store)
    # None of these waits for the store (its gate is closed).
    await asyncio.wait_for(events.log_many(["a", "b"], source="replica"), 1)
    await asyncio.wait_for(events.log("ready"), 1)
    assert await asyncio.wait_for(events.replica_created("v2", port=1, log_path=None), 1)
    assert store.written == ["created"]
    flushing = asyncio.create_task(events.flush())
    await asyncio.sleep(0.05)
    assert not flushing.done()  # flush waits for the store
    store.gate.set()
    await asyncio.wait_for(flushing, 5)
    assert store.written == ["created", "lines 2", "log ready"]


@pytest.mark.parametrize("to", ["starting", "running", "failed", "stopping", "stopped"])
async def test_a_replica_record_is_written_before_the_call_returns_after_what_is_queued(
    to: str,
) -> None:
    """`starting` carries the pid that finds the process again after a crash, `running` is
    what the supervisor routes to; none may wait in the queue, nor overtake what is in it."""
    store = SlowStore()
    events = Deferred(store)
    await events.log("before")
    changing = asyncio.create_task(events.replica_changed(uuid.uuid4(), to, pid=1))
    await asyncio.sleep(0.05)
    assert not changing.done()  # not returned before the store has it
    store.gate.set()
    await asyncio.wait_for(changing, 5)
    assert store.written == ["log before", to]


async def test_stopping_is_written_before_the_call_returns_after_what_is_queued() -> None:
    store = SlowStore()
    events = Deferred(store)
    replica = uuid.uuid4()
    await events.log("running")
    stopping = asyncio.create_task(events.replica_changed(replica, "stopping"))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the replica is not stopped before the store says so
    store.gate.set()
    await asyncio.wait_for(stopping, 5)
    assert store.written == ["log running", "stopping"]


async def test_a_failed_write_stops_the_rollout_at_its_next_call() -> None:
    store = SlowStore()
    store.fail = ConnectionRefusedError("the store is gone")
    store.gate.set()
    events = Deferred(store)
    replica = uuid.uuid4()
    await events.log("ready")
    await events.log("more")  # queued behind the failing write: never written
    with pytest.raises(ConnectionRefusedError):
        await events.flush()
    with pytest.raises(ConnectionRefusedError):
        await events.replica_created("v2", port=1, log_path=None)
    with pytest.raises(ConnectionRefusedError):
        await events.log("again")
    with pytest.raises(ConnectionRefusedError):
        await events.replica_changed(replica, "running")
    assert store.written == []  # nothing after the failure either


class PlacingStore(SlowStore):
    """A store that places replicas (the engine's events do)."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[uuid.UUID] = []

    async def place(self, prefer: uuid.UUID | None = None) -> NodeAccess | None:
        return NodeAccess(uuid.UUID(int=9), "n1", kind="ssh", address="10.0.0.9")

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        self.nodes.append(node_id or uuid.UUID(int=0))
        return uuid.UUID(int=2)


async def test_placement_goes_through_to_the_events_that_place() -> None:
    store = PlacingStore()
    events = defer(store)
    assert isinstance(events, Placing)
    access = await events.place()
    assert access is not None
    await events.replica_created("v2", port=None, log_path=None, node_id=access.id)
    assert store.nodes == [uuid.UUID(int=9)]
    assert not isinstance(defer(SlowStore()), Placing)  # the driver places on its own


async def test_a_record_waits_only_for_what_was_queued_before_it() -> None:
    """A chatty replica's output queued after the call does not hold the record back (on a
    slow store `starting` could wait out the whole readiness wait with no pid stored)."""

    class LateLinesHang(SlowStore):
        def __init__(self) -> None:
            super().__init__()
            self.late = asyncio.Event()  # never opened before the record is in

        async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None:
            if message.startswith("after"):
                await self.late.wait()
            await super().log(message, level=level, source=source)

    store = LateLinesHang()
    events = Deferred(store)
    await events.log("before")
    changing = asyncio.create_task(events.replica_changed(uuid.uuid4(), "starting", pid=1))
    await asyncio.sleep(0)
    for n in range(3):
        await events.log(f"after {n}")
    store.gate.set()
    await asyncio.wait_for(changing, 5)  # not behind the lines queued after it
    assert store.written == ["log before", "starting"]
    store.late.set()
    await asyncio.wait_for(events.flush(), 5)  # flush still waits for every line
    assert store.written == ["log before", "starting", "log after 0", "log after 1", "log after 2"]
