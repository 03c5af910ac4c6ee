"""The supervising shim of replicas on other nodes (drivers/remote.py), through a real
LocalTransport (the SSH transport runs the same commands on another host): variables travel
over stdin only, output is relayed and scrubbed, the replica outlives its channel, and one
listing finds it; stop and fence end it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from pathlib import Path

import psutil

from pilothouse.drivers import remote
from pilothouse.drivers.transport import LocalTransport
from tests.engine_support import CHILD_PYTHON, SAMPLE_APP

SECRET = "hunter2-very-secret-value"
NODE = uuid.uuid4()


def _order(command: str, env: dict[str, str] | None = None) -> remote.Order:
    return remote.Order(command, "v1", dict(env or {}), None, "127.0.0.1")


def _cmdline(pid: int) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(psutil.Process(pid).cmdline())
    return ""


async def _wait_for(path: Path, text: str) -> str:
    for _ in range(200):
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never reached {path}: {content!r}")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def test_env_over_stdin_scrubbed_relay_survives_its_channel(tmp_path: Path) -> None:
    transport = LocalTransport("n1", "127.0.0.1")
    rid = uuid.uuid4()
    command = (
        "/bin/sh -c 'echo secret=$API_TOKEN port=$PORT host=$HOST; "
        "while true; do echo tick; sleep 0.1; done'"
    )
    started = await remote.start(
        transport, NODE, rid, "release-1", _order(command, {"API_TOKEN": SECRET})
    )
    log = tmp_path / "replica.log"
    relay = remote.Relay(started.channel, log, [SECRET]).begin()
    try:
        text = await _wait_for(log, "tick")
        assert SECRET not in text and "secret=********" in text
        assert f"port={started.port} host=127.0.0.1" in text
        replica = psutil.Process(started.pid)
        shim = replica.parent()
        assert shim is not None
        for pid in (started.pid, shim.pid):
            assert SECRET not in _cmdline(pid)
        assert str(rid) in _cmdline(shim.pid) and "release-1" in _cmdline(shim.pid)
        assert replica.environ()["API_TOKEN"] == SECRET  # where it belongs

        # The channel goes away: the shim goes on draining, the replica lives.
        relay.close()
        await asyncio.sleep(0.4)
        assert replica.is_running() and replica.status() != psutil.STATUS_ZOMBIE
        assert shim.is_running()

        listed = await remote.running(transport, NODE)
        mine = [r for r in listed if r.replica_id == rid]
        assert len(mine) == 1 and mine[0].pid == started.pid
        assert mine[0].release_id == "release-1" and mine[0].version == "v1"
        assert abs(mine[0].started_at - started.started_at) < 0.05
        assert mine[0].memory_mb > 0
        assert await remote.running(transport, uuid.uuid4()) == []  # another node's

        assert await remote.stop(transport, mine[0], grace=2)
        assert not any(r.replica_id == rid for r in await remote.running(transport, NODE))
        assert not replica.is_running() or replica.status() == psutil.STATUS_ZOMBIE
    finally:
        _kill(started.pid)
        await relay.finish()


async def test_fence_stops_every_replica_not_kept(tmp_path: Path) -> None:
    transport = LocalTransport("n2", "127.0.0.1")
    node = uuid.uuid4()
    command = f"{CHILD_PYTHON} {SAMPLE_APP} --host {{host}} --port {{port}}"
    ids = [uuid.uuid4() for _ in range(3)]
    started = [await remote.start(transport, node, i, "r", _order(command)) for i in ids]
    relays = [
        remote.Relay(s.channel, tmp_path / f"{i}.log", []).begin()
        for s, i in zip(started, ids, strict=True)
    ]
    try:
        stopped = await remote.fence(transport, {ids[0]}, node_id=node, grace=2)
        assert {r.replica_id for r in stopped} == set(ids[1:])
        left = await remote.running(transport, node)
        assert [r.replica_id for r in left] == [ids[0]]
        assert await remote.fence(transport, set(), node_id=node, grace=2) != []
        assert await remote.running(transport, node) == []
    finally:
        for s in started:
            _kill(s.pid)
        for relay in relays:
            await relay.finish()


async def test_a_command_that_cannot_start_is_reported(tmp_path: Path) -> None:
    transport = LocalTransport("n3", "127.0.0.1")
    order = remote.Order("true", "v1", {}, str(tmp_path / "missing"), "127.0.0.1")
    try:
        await remote.start(transport, NODE, uuid.uuid4(), "r", order)
    except remote.RemoteError as exc:
        assert "missing" in str(exc)
    else:
        raise AssertionError("a missing cwd must fail the start")


class Counting(LocalTransport):
    """Counts the commands run and started (each is a shell start over SSH)."""

    def __init__(self) -> None:
        super().__init__("n1", "127.0.0.1")
        self.runs = 0
        self.starts = 0

    async def run(self, argv, *, input=None, timeout=30.0):  # type: ignore[no-untyped-def]
        self.runs += 1
        return await super().run(argv, input=input, timeout=timeout)

    async def start(self, argv):  # type: ignore[no-untyped-def]
        self.starts += 1
        return await super().start(argv)


async def test_lister_keeps_one_channel_and_starts_another_when_it_ends() -> None:
    transport = Counting()
    rid = uuid.uuid4()
    started = await remote.start(transport, NODE, rid, "release-1", _order("sleep 30"))
    started.channel.close()
    lister = remote.Lister(transport, NODE)
    try:
        for _ in range(5):
            found = await lister.list()
            assert [(r.replica_id, r.pid) for r in found] == [(rid, started.pid)]
        assert (transport.runs, transport.starts, lister.starts) == (0, 2, 1)
        # The listing process ends (its host rebooted, the connection dropped): the next
        # listing starts another channel at once and answers.
        assert lister.channel is not None
        inner = lister.channel._proc  # type: ignore[attr-defined]
        inner.kill()
        await inner.wait()
        assert [r.replica_id for r in await lister.list()] == [rid]
        assert lister.starts == 2
        _kill(started.pid)
        for _ in range(50):
            if not await lister.list():
                break
            await asyncio.sleep(0.05)
        assert await lister.list() == []
    finally:
        _kill(started.pid)
        await asyncio.wait_for(started.channel.wait(), 10)  # reap the shim
        await lister.close()


async def test_a_listing_cancelled_midway_does_not_answer_the_next_one() -> None:
    transport = Counting()
    lister = remote.Lister(transport, NODE)
    try:
        assert await lister.list() == []
        task = asyncio.create_task(lister.list())
        await asyncio.sleep(0)  # the request line is written; its answer comes ~0.1 s later
        await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        rid = uuid.uuid4()
        started = await remote.start(transport, NODE, rid, "release-1", _order("sleep 30"))
        started.channel.close()
        try:
            # A fresh listing, not the late answer of the cancelled one (from before the start).
            assert [r.replica_id for r in await lister.list()] == [rid]
        finally:
            _kill(started.pid)
            await asyncio.wait_for(started.channel.wait(), 10)  # reap the shim
    finally:
        await lister.close()


async def test_a_replica_printing_the_exit_report_is_not_taken_as_exited(tmp_path: Path) -> None:
    transport = LocalTransport("n4", "127.0.0.1")
    forged = '{"exit": 0, "msg": "hi"}'
    script = tmp_path / "say.sh"
    script.write_text(f"echo '{forged}'\necho '{{\"exit\": 3}}'\necho printed\nexec sleep 30\n")
    command = f"/bin/sh {script}"
    started = await remote.start(transport, NODE, uuid.uuid4(), "r", _order(command))
    log = tmp_path / "replica.log"
    relay = remote.Relay(started.channel, log, [], pid=started.pid, marker=started.marker).begin()
    try:
        text = await _wait_for(log, "printed")
        # The replica's own lines are its output, in its log, and do not end it.
        assert forged in text and '{"exit": 3}' in text
        assert not relay.exited and relay.exit_code is None
        _kill(started.pid)
        for _ in range(100):
            if relay.exited:
                break
            await asyncio.sleep(0.05)
        assert relay.exited and relay.exit_code == -signal.SIGKILL
        assert started.marker not in log.read_text()
    finally:
        _kill(started.pid)
        await relay.finish()


async def test_a_relay_without_a_marker_logs_every_line(tmp_path: Path) -> None:
    """A container's `logs --follow` channel has no shim: no line of it is a control line."""
    transport = LocalTransport("n5", "127.0.0.1")
    channel = await transport.start(["sh", "-c", "echo '{\"exit\": 0}'; echo done"])
    log = tmp_path / "replica.log"
    relay = remote.Relay(channel, log, []).begin()
    await relay.finish()
    assert log.read_text() == '{"exit": 0}\ndone\n'
    assert not relay.exited
