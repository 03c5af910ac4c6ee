"""The process driver on its own: real replicas (examples/sampleapp.py), a recording Events."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from pilothouse.drivers.base import ReplicaInfo, RolloutFailed, RolloutPlan, ServiceSpec
from pilothouse.drivers.process import ProcessDriver, is_alive
from tests.engine_support import SAMPLE_COMMAND

# A copy of the sample app and a Python the unprivileged run-as user can use (as root).
COMMAND = SAMPLE_COMMAND
READY = {"path": "/health", "timeout": 15, "interval": 0.05}


class Recorder:
    """Events that keep what the driver reports, in order."""

    def __init__(self) -> None:
        self.changes: list[tuple[uuid.UUID, str, dict[str, Any]]] = []
        self.created: list[uuid.UUID] = []
        self.lines: list[str] = []

    async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None:
        self.lines.append(message)

    async def log_many(self, messages: list[str], *, source: str) -> None:
        self.lines.extend(messages)

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        replica_id = uuid.uuid4()
        self.created.append(replica_id)
        return replica_id

    async def replica_changed(
        self, replica_id: uuid.UUID, to: str, *, reason: str | None = None, **fields: Any
    ) -> None:
        self.changes.append((replica_id, to, {"reason": reason, **fields}))

    def infos(self, ids: list[uuid.UUID], version: str) -> list[ReplicaInfo]:
        """The replicas as started (pid, start time, port), to stop them afterwards."""
        starts = {r: f for r, to, f in self.changes if to == "starting"}
        return [
            ReplicaInfo(
                r,
                version,
                starts[r]["pid"],
                starts[r]["process_started_at"],
                starts[r]["ports"]["http"],
                starts[r]["log_path"],
            )
            for r in ids
            if r in starts
        ]

    def order(self) -> list[tuple[str, str]]:
        """(old|new, status) in the order reported."""
        return [("new" if r in self.created else "old", to) for r, to, _ in self.changes]


def spec(version: str, replicas: int, **config: Any) -> ServiceSpec:
    return ServiceSpec(
        service_id=uuid.UUID(int=7),
        service_name="web",
        environment_name="dev",
        command=COMMAND,
        image=None,
        version=version,
        commit_sha=None,
        target_replicas=replicas,
        config={"drain_seconds": 0, "grace_seconds": 5, **config},
        health_check=READY,
    )


async def _live(driver: ProcessDriver, version: str, count: int) -> list[ReplicaInfo]:
    events = Recorder()
    plan = RolloutPlan(spec(version, count, max_surge=count), [], uuid.uuid4())
    outcome = await driver.rollout(plan, events)
    if outcome.cleanup is not None:
        await outcome.cleanup
    return events.infos(outcome.replicas, version)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_max_surge_starts_that_many_new_replicas_before_any_old_one_leaves(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[tuple[str, str]]:
        driver = ProcessDriver(tmp_path)
        old = await _live(driver, "v1", 4)
        events = Recorder()
        plan = RolloutPlan(spec("v2", 4, max_surge=2), old, uuid.uuid4())
        outcome = await driver.rollout(plan, events)
        assert outcome.cleanup is not None
        await outcome.cleanup
        assert outcome.instances == 4 and not any(
            is_alive(r.pid, r.process_started_at) for r in old
        )
        await driver.stop(events.infos(outcome.replicas, "v2"), Recorder())
        return events.order()

    order = _run(scenario())
    first_old = order.index(("old", "stopping"))
    # Two new replicas are started together (surge 2) before the first old one is retired,
    # and never more than two new ones are starting at once.
    assert order[:first_old].count(("new", "starting")) == 2
    starting = 0
    peak = 0
    for who, to in order:
        if who == "new" and to == "starting":
            starting += 1
        elif who == "new" and to in ("running", "failed"):
            starting -= 1
        peak = max(peak, starting)
    assert peak == 2
    assert order.count(("new", "running")) == 4 and order.count(("old", "stopped")) == 4


def test_max_unavailable_retires_old_replicas_ahead_of_their_replacements(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[tuple[str, str]]:
        driver = ProcessDriver(tmp_path)
        old = await _live(driver, "v1", 2)
        events = Recorder()
        plan = RolloutPlan(spec("v2", 2, max_surge=1, max_unavailable=1), old, uuid.uuid4())
        outcome = await driver.rollout(plan, events)
        if outcome.cleanup is not None:
            await outcome.cleanup
        await driver.stop(events.infos(outcome.replicas, "v2"), Recorder())
        return events.order()

    order = _run(scenario())
    # One old replica leaves before the first new one is even started.
    assert order.index(("old", "stopping")) < order.index(("new", "starting"))
    assert order.count(("new", "running")) == 2 and order.count(("old", "stopped")) == 2


def test_restart_starts_the_same_replica_again_and_alive_follows_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        driver = ProcessDriver(tmp_path)
        [replica] = await _live(driver, "v1", 1)
        await driver.terminate(replica, 5)
        assert not driver.alive(replica)
        events = Recorder()
        again = await driver.restart(spec("v1", 1), replica, events)
        try:
            assert again.id == replica.id and again.pid != replica.pid
            assert driver.alive(again)
            [(rid, to, fields)] = events.changes
            assert (rid, to, fields["reason"]) == (replica.id, "starting", "restart after crash")
            sample = driver.sample(again)
            assert sample is not None and sample.memory_mb > 0
        finally:
            await driver.terminate(again, 5)
        assert driver.sample(again) is None

    _run(scenario())


def test_restart_that_never_gets_ready_is_stopped_and_reported(tmp_path: Path) -> None:
    async def scenario() -> None:
        driver = ProcessDriver(tmp_path)
        broken = ReplicaInfo(uuid.uuid4(), "v1-broken")
        failing = spec("v1-broken", 1)
        failing = ServiceSpec(**{**failing.__dict__, "health_check": {**READY, "timeout": 1}})
        with pytest.raises(RolloutFailed, match="not ready"):
            await driver.restart(failing, broken, Recorder())

    _run(scenario())


def test_the_event_is_a_typed_field_a_restart_replaces_every_replica(tmp_path: Path) -> None:
    async def scenario() -> tuple[set[uuid.UUID], set[uuid.UUID]]:
        driver = ProcessDriver(tmp_path)
        old = await _live(driver, "v1", 2)
        same = RolloutPlan(spec("v1", 2), old, uuid.uuid4())
        kept = await driver.rollout(same, Recorder())
        assert not kept.cleanup
        base = spec("v1", 2)
        restart = ServiceSpec(**{**base.__dict__, "event": "restart"})
        events = Recorder()
        replaced = await driver.rollout(RolloutPlan(restart, old, uuid.uuid4()), events)
        if replaced.cleanup is not None:
            await replaced.cleanup
        await driver.stop(events.infos(replaced.replicas, "v1"), Recorder())
        return set(kept.replicas), set(replaced.replicas)

    kept, replaced = _run(scenario())
    assert kept and not kept & replaced
