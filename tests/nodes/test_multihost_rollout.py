"""Replicas across hosts through the process driver's remote path, for real: three nodes reached
through a transport (here a LocalTransport per node, each on its own loopback address, so the
shim, the listing poller, placement and the one nginx router all run as they do over SSH), the
engine and the supervisor in this process.

6 replicas land 2-2-2, nginx serves all 6 backends (host:port) (rolling to v2 under load is
tests/nodes/test_multihost_e2e.py's, over SSH), a crashed remote replica is restarted (same id,
same node), and a node whose listing fails is not taken for dead."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pilothouse.core.crypto import Keyring, seal_value
from pilothouse.core.db import Database
from pilothouse.core.loops import Tasks
from pilothouse.deployments.engine import Engine
from pilothouse.deployments.supervisor import Supervisor
from pilothouse.drivers import remote
from pilothouse.drivers.nginx import NginxRouter
from pilothouse.drivers.transport import (
    Channel,
    Completed,
    LocalTransport,
    TransportPool,
    TransportUnavailable,
)
from pilothouse.nodes import service as nodes
from pilothouse.replicas.models import Node, Replica
from tests.conftest import SHA, Api, free_port, one_store
from tests.engine_support import CHILD_PYTHON, SAMPLE_APP

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

HOSTS = {"h1": "127.0.0.2", "h2": "127.0.0.3", "h3": "127.0.0.4"}
COMMAND = f"{CHILD_PYTHON} {SAMPLE_APP} --host {{host}} --port {{port}}"


class Flaky(LocalTransport):
    """A node's transport that stops answering while its name is in `down`."""

    down: set[str] = set()

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 30.0
    ) -> Completed:
        if self.node in self.down:
            raise TransportUnavailable(f"node {self.node}: connection timed out")
        return await super().run(argv, input=input, timeout=timeout)

    async def start(self, argv: Sequence[str]) -> Channel:
        if self.node in self.down:
            raise TransportUnavailable(f"node {self.node}: connection timed out")
        return _FlakyChannel(self.node, await super().start(argv))


class _FlakyChannel:
    """A channel that reads nothing while its node is down (as over a cut link)."""

    def __init__(self, node: str, inner: Channel) -> None:
        self.node, self.inner = node, inner

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def write_eof(self) -> None:
        await self.inner.write_eof()

    async def readline(self) -> bytes:
        line = await self.inner.readline()
        return b"" if self.node in Flaky.down else line

    async def wait(self) -> int | None:
        return await self.inner.wait()

    def close(self) -> None:
        self.inner.close()


async def _register_hosts(
    db: Database, keyring: Keyring | None, cpu: float = 4.0
) -> dict[uuid.UUID, str]:
    """The three hosts as ssh nodes (as `node add --ssh` records them; the test's transport
    factory reaches each through a LocalTransport on its own loopback address)."""
    capacity = {"cpu_cores": cpu, "memory_mb": 8192, "storage_gb": 100}
    async with db.session() as session:
        found = {}
        for name, address in HOSTS.items():
            node = await nodes.register(session, name, capacity=capacity, labels={"pool": "web"})
            node.address, node.transport, node.ssh_user = address, "ssh", "root"
            if keyring is not None:
                node.private_key_sealed = seal_value("not a real key", keyring)
            found[node.id] = name
        return found


def _setup(api: Api, router_port: int) -> None:
    env = {"name": "prod", "driver": "process", "config": {"node_labels": {"pool": "web"}}}
    api.ok(api.post("/environments", env), 201)
    body = {
        "environment": "prod",
        "name": "web",
        "command": COMMAND,
        "target_replicas": 6,
        "resources": {"cpu_cores": 0.5, "memory_mb": 512},
        "driver_config": {
            "router": "nginx",
            "router_port": router_port,
            "drain_seconds": 0.2,
            "grace_seconds": 5,
        },
        "health_check": {"path": "/health", "timeout": 20, "interval": 0.05},
    }
    svc = api.ok(api.post("/services", body), 201)
    for version in ("v1.0.0", "v2.0.0"):
        art = {"service": svc["id"], "version": version, "commit_sha": SHA}
        api.ok(api.post("/artifacts", art), 201)


async def _deploy(api: Api, engine: Engine, version: str) -> str:
    dep = await asyncio.to_thread(
        lambda: api.ok(api.post("/deployments", {"service": "web", "version": version}), 201)
    )
    assert await engine.claim(uuid.UUID(dep["id"]))
    return await engine.run(uuid.UUID(dep["id"]))


async def _running(db: Database) -> list[Replica]:
    async with db.session(write=False) as session:
        rows = await session.scalars(sa.select(Replica).where(Replica.status == "running"))
        return list(rows)


def _spread(rows: list[Replica], names: dict[uuid.UUID, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        name = names.get(row.node_id) if row.node_id else None
        out[name or "?"] = out.get(name or "?", 0) + 1
    return out


async def _until(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


@one_store
def test_six_replicas_over_three_hosts(api: Api, db_url: str, tmp_path: Path) -> None:
    router_port = free_port()
    _setup(api, router_port)
    data_dir = tmp_path / "data"
    pool = TransportPool(factory=lambda access: Flaky(access.name, access.address))

    async def scenario() -> None:
        cut: list[remote.Relay] = []
        db = Database(db_url)
        engine = Engine(db, data_dir, transports=pool)
        supervisor = Supervisor(engine, Tasks())
        try:
            names = await _register_hosts(db, engine.keyring())
            assert await _deploy(api, engine, "v1.0.0") == "success"
            v1 = await _running(db)
            assert _spread(v1, names) == {"h1": 2, "h2": 2, "h3": 2}
            conf = (data_dir / "nginx" / "services").glob("*.conf")
            servers = [line for line in next(conf).read_text().splitlines() if "server 1" in line]
            assert sorted(s.split()[1].rsplit(":", 1)[0] for s in servers) == sorted(
                [*HOSTS.values()] * 2
            )
            seen = set()
            async with httpx.AsyncClient() as client:
                for _ in range(40):
                    reply = await client.get(f"http://127.0.0.1:{router_port}/")
                    seen.add(reply.json()["pid"])
            assert len(seen) == 6  # every backend on every host serves
            # Rolling to v2 across the hosts under load (0 failed, the old processes gone from
            # their hosts) is the multihost end-to-end scenario's, over SSH
            # (tests/nodes/test_multihost_e2e.py): the same remote path, one rollout less here.

            # A crashed remote replica comes back: same id, same node, back in the router.
            victim = v1[0]
            await _kill_remote(pool, victim)

            async def restarted() -> bool:
                await supervisor.supervise()
                async with db.session(write=False) as session:
                    row = await session.get(Replica, victim.id)
                    assert row is not None
                    return row.status == "running" and row.pid != victim.pid

            await _until(restarted, "the crashed replica must be restarted")
            async with db.session(write=False) as session:
                again = await session.get(Replica, victim.id)
                assert again is not None and again.node_id == victim.node_id
                assert again.restart_count == 1
            config = next((data_dir / "nginx" / "services").glob("*.conf")).read_text()
            assert f"{HOSTS[names[victim.node_id]]}:{again.ports['http']}" in config

            # A node that does not answer: its replicas are not taken for dead.
            h3 = next(i for i, n in names.items() if n == "h3")
            on_h3 = [r for r in await _running(db) if r.node_id == h3]
            Flaky.down.add("h3")
            driver: Any = engine.drivers["process"]
            for row in on_h3:  # the link is cut: their channels are gone too
                cut.append(driver._relays.pop(row.id))
                cut[-1].close()
            await _kill_remote(pool, on_h3[0])  # it died meanwhile: nobody can know yet
            for _ in range(4):
                await supervisor.supervise()
                await asyncio.sleep(0.6)
            statuses = {r.id: r.status for r in await _running(db)}
            assert all(statuses.get(r.id) == "running" for r in on_h3)
            Flaky.down.discard("h3")

            async def noticed() -> bool:
                await supervisor.supervise()
                async with db.session(write=False) as session:
                    row = await session.get(Replica, on_h3[0].id)
                    return row is not None and row.restart_count == 1 and row.status == "running"

            await _until(noticed, "once h3 answers, the dead replica is restarted")

            # Its node is no longer ready: the crashed replica is placed on another one.
            h2 = next(i for i, n in names.items() if n == "h2")
            async with db.session() as session:
                node = await session.get(Node, h2)
                assert node is not None
                node.status = "down"
            lost = next(r for r in await _running(db) if r.node_id == h2)
            await _kill_remote(pool, lost)

            async def moved() -> bool:
                await supervisor.supervise()
                async with db.session(write=False) as session:
                    row = await session.get(Replica, lost.id)
                    return row is not None and row.status == "running" and row.node_id != h2

            await _until(moved, "a replica whose node is down is restarted elsewhere")
            placed = _spread(await _running(db), names)
            assert placed["h2"] == 1 and placed["h1"] + placed["h3"] == 5
        finally:
            Flaky.down.clear()
            NginxRouter(data_dir / "nginx").kill()
            with contextlib.suppress(Exception):
                await remote.fence(LocalTransport(), set(), grace=2)
            await engine.drivers["process"].close()  # type: ignore[attr-defined]
            await asyncio.gather(*(relay.finish() for relay in cut))
            await pool.close()
            await db.dispose()

    asyncio.run(scenario())


async def _kill_remote(pool: TransportPool, replica: Replica) -> None:
    """SIGKILL the replica on its node (as a crash would)."""
    transport = LocalTransport()
    assert replica.pid and replica.process_started_at
    await remote.stop_many(transport, [(replica.pid, replica.process_started_at)], 0)


@one_store
def test_capacity_check_applies_to_process_services_once_remote_nodes_exist(
    api: Api, db_url: str
) -> None:
    _setup(api, free_port())
    api.ok(api.post("/services/web/scale", {"target_replicas": 7}))

    async def register(transport: str) -> None:
        db = Database(db_url)
        try:
            await _register_hosts(db, None, cpu=1.0)
            async with db.session() as session:
                await session.execute(sa.update(Node).values(transport=transport))
        finally:
            await db.dispose()

    asyncio.run(register("ssh"))
    refused = api.post("/deployments", {"service": "web", "version": "v1.0.0"})
    assert refused.status_code == 409, refused.text
    assert "needs 7 x 0.5 CPU, node h1 has 1.0 free" in refused.json()["message"]
    # Every node is this host: process replicas are not placed, nothing is checked.
    asyncio.run(register("local"))
    assert api.post("/deployments", {"service": "web", "version": "v1.0.0"}).status_code == 201
