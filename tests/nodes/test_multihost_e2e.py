"""Issue 20 end to end over real SSH: three namespace hosts (tests/support/netns.py), each with its
own sshd, registered with their host keys trusted (the API `node add --ssh ... --trust` calls);
a process service running examples/sampleapp.py on `{host}:{port}` of each host behind the one
nginx router on this host; the engine, the node watch and the alert channel in this process.

6 replicas spread 2-2-2, nginx lists all 6 backends (host:port) and each one serves; v2 rolls
across the hosts under load through the router with 0 failed requests and the v1 processes are
gone from their hosts (the rollout of tests/nodes/test_multihost_rollout.py, over SSH); one
host's link is cut: it becomes unreachable after node_unreachable_after (2 s here), its 2
replicas are marked lost, the replacement deployment puts them on the other two hosts, the
router serves only live replicas, the `node_unreachable` alert went out; the link is restored:
the node is ready again and the 2 stale replicas still running there are stopped (fenced), which
the `node_ready` alert says."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pilothouse.alerts import service as alerts
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.deployments.engine import Engine
from pilothouse.deployments.models import Deployment
from pilothouse.drivers import remote
from pilothouse.drivers.nginx import NginxRouter
from pilothouse.drivers.transport import LocalTransport
from pilothouse.nodes import watch as watching
from pilothouse.replicas.models import Node, Replica
from tests.alerts.test_channels import Receiver
from tests.conftest import SHA, Api, free_port, one_store
from tests.engine_support import CHILD_PYTHON, SAMPLE_APP, Load
from tests.support.netns import Hosts

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

PROBE_EVERY = 0.5
COMMAND = f"{CHILD_PYTHON} {SAMPLE_APP} --host {{host}} --port {{port}}"


def _setup(api: Api, hosts: Hosts, router_port: int, receiver: Receiver) -> dict[str, str]:
    """The hosts as nodes (trusting the fingerprint each presents), the service, 2 versions."""

    def add(host: Any) -> dict[str, Any]:
        body = {
            "name": host.name,
            "address": host.address,
            "private_key": hosts.private_key,
            "trust": host.fingerprint,
            "labels": {"pool": "web"},
        }
        node: dict[str, Any] = api.ok(api.post("/nodes", body), 201)
        assert node["status"] == "ready" and node["host_key_fingerprint"] == host.fingerprint
        return node

    names = {}
    with ThreadPoolExecutor(3) as pool:  # each add connects and detects over SSH
        for host, node in zip(hosts, pool.map(add, hosts), strict=True):
            names[node["id"]] = host.name
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
    channel = {"name": "oncall", "kind": "webhook", "config": {"url": receiver.url}}
    api.ok(api.post("/channels", channel), 201)
    return names


async def _run(engine: Engine, deployment_id: uuid.UUID) -> str:
    assert await engine.claim(deployment_id)
    return await engine.run(deployment_id)


async def _running(db: Database) -> list[Replica]:
    async with db.session(write=False) as session:
        rows = await session.scalars(sa.select(Replica).where(Replica.status == "running"))
        return list(rows)


def _spread(rows: list[Replica], names: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        name = names.get(str(row.node_id), "?")
        out[name] = out.get(name, 0) + 1
    return out


async def _until(watch: watching.NodeWatch, verdict: str, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for outcome in await watch.tick():
            if outcome.verdict == verdict:
                return outcome
        await asyncio.sleep(PROBE_EVERY / 2)
    raise AssertionError(f"no {verdict!r} within {seconds} s")


@one_store
def test_three_hosts_rollout_host_failure_and_fencing(
    netns_hosts: Callable[[int], Hosts],
    api: Api,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alerts, "RETRY_DELAYS", (0.0, 0.0))
    hosts = netns_hosts(3)
    router_port = free_port()
    receiver = Receiver(204)
    began = time.monotonic()
    names = _setup(api, hosts, router_port, receiver)
    data_dir = tmp_path / "data"
    router = f"http://127.0.0.1:{router_port}/"

    async def deploy(engine: Engine, version: str) -> str:
        body = {"service": "web", "version": version}
        dep = await asyncio.to_thread(lambda: api.ok(api.post("/deployments", body), 201))
        return await _run(engine, uuid.UUID(dep["id"]))

    async def scenario() -> None:
        db = Database(db_url)
        engine = Engine(db, data_dir)
        watch = watching.NodeWatch(
            db,
            Leases(db, owner="watch"),
            unreachable_after=2.0,
            probe_timeout=1.0,
            keyring=engine.keyring,
            probe_every=PROBE_EVERY,  # 3 s in production: the slot length is not the claim
        )
        marks = [("start", began)]
        marks.append(("setup", time.monotonic()))
        try:
            await engine.refresh_nodes()
            assert await deploy(engine, "v1.0.0") == "success"
            v1 = await _running(db)
            assert _spread(v1, names) == {"h1": 2, "h2": 2, "h3": 2}
            # nginx lists the 6 backends as host:port, and every one of them serves
            conf = next((data_dir / "nginx" / "services").glob("*.conf")).read_text()
            servers = [line for line in conf.splitlines() if "server 198." in line]
            assert sorted(s.split()[1].rsplit(":", 1)[0] for s in servers) == sorted(
                [h.address for h in hosts] * 2
            )
            async with httpx.AsyncClient(timeout=5) as client:
                seen = {(await client.get(router)).json()["pid"] for _ in range(40)}
            assert len(seen) == 6
            marks.append(("v1", time.monotonic()))
            with Load(router_port, threads=2) as load:
                await asyncio.sleep(0.3)
                assert await deploy(engine, "v2.0.0") == "success"
                await asyncio.sleep(0.3)
            assert load.result.failed == 0, load.result
            assert set(load.result.versions) == {"v1.0.0", "v2.0.0"}
            marks.append(("v2", time.monotonic()))
            v2 = await _running(db)
            assert {r.version for r in v2} == {"v2.0.0"}
            assert _spread(v2, names) == {"h1": 2, "h2": 2, "h3": 2}
            for node_id in {row.node_id for row in v1}:  # the old ones are gone from their hosts
                access = engine.transports.known(node_id)
                assert access is not None
                listed = {
                    r.replica_id
                    for r in await remote.running(engine.transports.get(access), node_id)
                }
                assert not {r.id for r in v1 if r.node_id == node_id} & listed
                # the listing works: it names this host's v2 replicas
                assert {r.id for r in v2 if r.node_id == node_id} <= listed
            assert [o.verdict for o in await watch.tick()] == ["seen"] * 3

            # Host h1 loses its link: unreachable, its replicas lost and replaced on h2, h3.
            h1 = hosts[0]
            h1_id = next(uuid.UUID(i) for i, n in names.items() if n == "h1")
            stale = [r for r in v2 if r.node_id == h1_id]
            h1.cut()
            lost = await _until(watch, "lost")
            marks.append(("lost", time.monotonic()))
            assert (lost.node, lost.failed_replicas, len(lost.replacements)) == ("h1", 2, 1)
            async with db.session(write=False) as session:
                node = await session.get(Node, h1_id)
                assert node is not None and node.status == "unreachable"
                statuses = [(await session.get(Replica, r.id)).status for r in stale]  # type: ignore[union-attr]
                scale = await session.scalar(
                    sa.select(Deployment).where(
                        Deployment.event_type == "scale", Deployment.status == "pending"
                    )
                )
            assert statuses == ["failed", "failed"] and scale is not None
            assert await _run(engine, scale.id) == "success"
            marks.append(("replaced", time.monotonic()))
            live = await _running(db)
            assert len(live) == 6 and {r.version for r in live} == {"v2.0.0"}
            assert _spread(live, names) == {"h2": 3, "h3": 3}
            conf = next((data_dir / "nginx" / "services").glob("*.conf")).read_text()
            assert h1.address not in conf
            assert conf.count("server 198.") == 6
            async with httpx.AsyncClient(timeout=5) as client:
                served = {(await client.get(router)).json()["pid"] for _ in range(30)}
            assert served <= {r.pid for r in live}
            await alerts.settle()
            down = [b for b in receiver.bodies if b["event"] == "node_unreachable"]
            assert len(down) == 1 and down[0]["node"] == "h1" and down[0]["replicas_lost"] == 2
            # Cut off, h1 still runs its 2 replicas of v2 (nobody could stop them); the hosts
            # share this machine's processes, so a local listing sees them.
            on_h1 = await remote.running(LocalTransport(), h1_id)
            assert sorted(r.pid for r in on_h1) == sorted(r.pid or 0 for r in stale)

            # The link is back: h1 is ready again and its stale replicas are fenced.
            h1.restore()
            back = await _until(watch, "returned")
            marks.append(("returned", time.monotonic()))
            assert back.node == "h1"
            await alerts.settle()
            ready = [b for b in receiver.bodies if b["event"] == "node_ready"]
            assert len(ready) == 1
            assert "stopped 2 stray replicas: web v2.0.0" in ready[0]["text"], ready[0]
            access = engine.transports.known(h1_id)
            assert access is not None
            assert await remote.running(engine.transports.get(access), h1_id) == []
            assert await remote.running(LocalTransport(), h1_id) == []
            assert len(await _running(db)) == 6  # the live ones on h2, h3 are untouched
        finally:
            marks.append(("checked", time.monotonic()))
            print("marks", [(n, round(t - marks[0][1], 1)) for n, t in marks])
            NginxRouter(data_dir / "nginx").kill()
            await watch.close()
            await engine.drivers["process"].close(timeout=1.0)  # type: ignore[attr-defined]
            await engine.transports.close()
            await db.dispose()
            print("teardown", round(time.monotonic() - marks[-1][1], 1))

    try:
        asyncio.run(scenario())
    finally:
        receiver.close()
        with contextlib.suppress(Exception):
            for host in hosts:
                host.stop_sshd()
