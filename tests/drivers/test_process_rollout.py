"""The process driver's rolling update with real replica processes (no store, no router):
max_surge and max_unavailable bound what serves and what starts, as drivers/rolling.py plans."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from pilothouse.drivers.base import ReplicaInfo, RolloutFailed, RolloutPlan, ServiceSpec
from pilothouse.drivers.process import ProcessDriver, is_alive
from tests.engine_support import SAMPLE_COMMAND


class Recorder:
    """The Events a driver reports to, kept in memory: every replica's state and process, and
    after each change how many replicas serve and how many serve or start."""

    def __init__(self, known: dict[uuid.UUID, dict[str, Any]] | None = None) -> None:
        self.replicas: dict[uuid.UUID, dict[str, Any]] = dict(known or {})
        self.serving: list[int] = []
        self.in_flight: list[int] = []

    async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None:
        pass

    async def log_many(self, messages: list[str], *, source: str) -> None:
        pass

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        replica_id = uuid.uuid4()
        self.replicas[replica_id] = {"status": "pending", "version": version, "port": port}
        return replica_id

    async def replica_changed(self, replica_id: uuid.UUID, to: str, **fields: Any) -> None:
        self.replicas[replica_id].update(fields, status=to)
        statuses = [r["status"] for r in self.replicas.values()]
        self.serving.append(statuses.count("running"))
        self.in_flight.append(statuses.count("running") + statuses.count("starting"))

    def info(self, replica_id: uuid.UUID) -> ReplicaInfo:
        r = self.replicas[replica_id]
        return ReplicaInfo(replica_id, r["version"], r["pid"], r["process_started_at"], r["port"])


def spec(version: str, replicas: int, **config: Any) -> ServiceSpec:
    return ServiceSpec(
        service_id=uuid.UUID(int=7),
        service_name="web",
        environment_name="test",
        command=SAMPLE_COMMAND,
        image=None,
        version=version,
        commit_sha=None,
        target_replicas=replicas,
        config={"drain_seconds": 0, "grace_seconds": 5, **config},
        health_check={"timeout": 20, "interval": 0.05},
    )


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), (2, 0), (1, 1), (0, 2)])
async def test_rolling_update_respects_surge_and_unavailable(
    tmp_path: Path, surge: int, unavailable: int
) -> None:
    driver = ProcessDriver(tmp_path)
    first = Recorder()
    second = Recorder()
    try:
        out = await driver.rollout(RolloutPlan(spec("v1.0.0", 4), [], uuid.uuid4()), first)
        assert out.instances == 4
        assert max(first.in_flight) <= 1 + len(out.replicas)
        v1 = [first.info(r) for r in out.replicas]
        second.replicas = {r: dict(first.replicas[r]) for r in out.replicas}
        limits = {"max_surge": surge, "max_unavailable": unavailable}
        plan = RolloutPlan(spec("v2.0.0", 4, **limits), v1, uuid.uuid4())
        out2 = await driver.rollout(plan, second)
        if out2.cleanup is not None:
            await out2.cleanup
        assert out2.instances == 4
        assert min(second.serving) >= 4 - unavailable, second.serving
        assert max(second.in_flight) <= 4 + max(surge, 1), second.in_flight
        assert {second.replicas[r.id]["status"] for r in v1} == {"stopped"}
        assert not any(is_alive(r.pid, r.process_started_at) for r in v1)
        assert {second.replicas[r]["version"] for r in out2.replicas} == {"v2.0.0"}
    finally:
        for replica in [*first.replicas.values(), *second.replicas.values()]:
            if is_alive(replica.get("pid"), replica.get("process_started_at")):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(replica["pid"], signal.SIGKILL)


class LosesItsLogs(Recorder):
    """A store that takes replica records but fails the verification's log line."""

    async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None:
        if source == "verification":
            raise ConnectionRefusedError("the store is gone")


async def test_a_failed_rollout_stops_its_replicas_when_a_queued_write_failed(
    tmp_path: Path,
) -> None:
    """The verification's line (queued) fails to be written, then the verification fails: the
    new replica is stopped all the same, and the rollout's failure is what is raised."""
    driver = ProcessDriver(tmp_path)
    events = LosesItsLogs()
    never = {"verify": {"checks": 1, "required": 2, "window": 0}}  # fails whatever answers
    try:
        with pytest.raises(RolloutFailed, match="verification failed"):
            await driver.rollout(RolloutPlan(spec("v1.0.0", 1, **never), [], uuid.uuid4()), events)
        started = [r for r in events.replicas.values() if r.get("pid")]
        assert started
        assert not any(is_alive(r["pid"], r["process_started_at"]) for r in started)
    finally:
        for replica in events.replicas.values():
            if is_alive(replica.get("pid"), replica.get("process_started_at")):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(replica["pid"], signal.SIGKILL)


class SlowToStart(Recorder):
    """A store slow to take `starting` (readiness is polled meanwhile); it notes the order in
    which each replica's records are in."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[uuid.UUID, str]] = []

    async def replica_changed(self, replica_id: uuid.UUID, to: str, **fields: Any) -> None:
        if to == "starting":
            await asyncio.sleep(0.5)
        await super().replica_changed(replica_id, to, **fields)
        self.order.append((replica_id, to))


async def test_running_is_recorded_only_after_starting_however_slow_the_store(
    tmp_path: Path,
) -> None:
    driver = ProcessDriver(tmp_path)
    events = SlowToStart()
    try:
        out = await driver.rollout(RolloutPlan(spec("v1.0.0", 2), [], uuid.uuid4()), events)
        assert out.instances == 2
        for replica_id in out.replicas:
            assert [to for r, to in events.order if r == replica_id] == ["starting", "running"]
            assert events.replicas[replica_id]["pid"]
    finally:
        for replica in events.replicas.values():
            if is_alive(replica.get("pid"), replica.get("process_started_at")):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(replica["pid"], signal.SIGKILL)


class CannotRecordStarting(Recorder):
    """A store that fails `starting`: the replica's pid never gets in."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: list[int] = []

    async def replica_changed(self, replica_id: uuid.UUID, to: str, **fields: Any) -> None:
        if to == "starting":
            self.pids.append(fields["pid"])
            raise RuntimeError("the store is gone")
        await super().replica_changed(replica_id, to, **fields)


async def test_a_replica_whose_starting_cannot_be_recorded_is_not_left_running(
    tmp_path: Path,
) -> None:
    """Nothing would find it again (no pid in the store): it is stopped, the failure raised."""
    driver = ProcessDriver(tmp_path)
    events = CannotRecordStarting()
    try:
        with pytest.raises(RuntimeError, match="the store is gone"):
            await driver.rollout(RolloutPlan(spec("v1.0.0", 1), [], uuid.uuid4()), events)
        assert events.pids
        assert not any(is_alive(pid, None) for pid in events.pids)
    finally:
        for pid in events.pids:
            if is_alive(pid, None):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


class SlowToMarkStopping(Recorder):
    """A store slow to take `stopping` (the old replicas are still `running` meanwhile)."""

    async def replica_changed(self, replica_id: uuid.UUID, to: str, **fields: Any) -> None:
        if to == "stopping":
            await asyncio.sleep(0.3)
        await super().replica_changed(replica_id, to, **fields)


async def test_a_rollout_succeeds_with_its_old_replicas_recorded_stopping(
    tmp_path: Path,
) -> None:
    """When a rollout returns, no replica it took out of the router is still recorded
    `running` (a listing right after a deploy shows only the new release serving); they may
    still be draining."""
    driver = ProcessDriver(tmp_path)
    first, second = Recorder(), SlowToMarkStopping()
    try:
        out = await driver.rollout(RolloutPlan(spec("v1.0.0", 2), [], uuid.uuid4()), first)
        v1 = [first.info(r) for r in out.replicas]
        second.replicas = {r: dict(first.replicas[r]) for r in out.replicas}
        out2 = await driver.rollout(RolloutPlan(spec("v2.0.0", 2), v1, uuid.uuid4()), second)
        statuses = {second.replicas[r.id]["status"] for r in v1}
        if out2.cleanup is not None:
            await out2.cleanup
        assert statuses <= {"stopping", "stopped"}, statuses
    finally:
        for replica in [*first.replicas.values(), *second.replicas.values()]:
            if is_alive(replica.get("pid"), replica.get("process_started_at")):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(replica["pid"], signal.SIGKILL)
