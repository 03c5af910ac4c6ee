"""Containers on other hosts, for real: two network-namespace hosts with their own sshd
(tests/support/netns.py) registered as ssh nodes, real podman reached over SSH, the engine and
the supervisor in this process, the nginx router on this host (one store: the store does not
matter here).

4 replicas of the sample image land 2-2 over the two hosts with their ports published on the
hosts' addresses, nginx serves all of them, a secret variable reaches the containers through
`--env-file /dev/stdin` and is on no command line sent to a host (and scrubbed from the relayed
output), rolling to a new image keeps 0 failed requests and removes the old containers, and a
container killed on its host is restarted there (same replica, same node); fencing a host
removes the containers of replicas that are not kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
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
from pilothouse.deployments.engine import Engine, replica_info
from pilothouse.deployments.supervisor import Supervisor
from pilothouse.drivers.nginx import NginxRouter
from pilothouse.drivers.ssh import SSHTransport
from pilothouse.drivers.transport import Channel, Completed, TransportPool
from pilothouse.nodes import service as nodes
from pilothouse.replicas.models import Replica
from tests import container_image
from tests.conftest import SHA, Api, free_port, one_store
from tests.engine_support import Load
from tests.support.netns import Hosts

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

SECRET = "s3cr3t-over-ssh-7f2a"


class Recording(SSHTransport):
    """The SSH transport, keeping every argv it sends to a host (and every stdin)."""

    sent: list[list[str]] = []
    inputs: list[bytes] = []

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 30.0
    ) -> Completed:
        self.sent.append(list(argv))
        if input:
            self.inputs.append(input)
        return await super().run(argv, input=input, timeout=timeout)

    async def start(self, argv: Sequence[str]) -> Channel:
        self.sent.append(list(argv))
        return await super().start(argv)


async def _register(db: Database, keyring: Keyring, hosts: Hosts) -> dict[uuid.UUID, str]:
    """The namespace hosts as ssh nodes, as `node add --ssh` records them."""
    capacity = {"cpu_cores": 4.0, "memory_mb": 8192, "storage_gb": 100}
    found = {}
    async with db.session() as session:
        for host in hosts:
            node = await nodes.register(session, host.name, capacity=capacity, labels={"pool": "w"})
            node.address, node.transport, node.ssh_user = host.address, "ssh", "root"
            node.ssh_port, node.host_key = host.port, host.host_key
            node.private_key_sealed = seal_value(hosts.private_key, keyring)
            found[node.id] = host.address
    return found


def _setup(api: Api, images: Any, router_port: int) -> None:
    (ref1, digest1), (ref2, digest2) = images
    env = {"name": "prod", "driver": "container", "config": {"node_labels": {"pool": "w"}}}
    api.ok(api.post("/environments", env), 201)
    for key, value, secret in (("API_KEY", SECRET, True), ("SAMPLE_PRINT_ENV", "1", False)):
        api.ok(
            api.client.put(
                f"/api/v1/environments/prod/vars/{key}",
                json={"value": value, "is_secret": secret},
                headers={"Authorization": f"Bearer {api.token}"},
            )
        )
    body = {
        "environment": "prod",
        "name": "web",
        "image": ref1,
        "target_replicas": 4,
        "resources": {"cpu_cores": 0.5, "memory_mb": 512},
        "driver_config": {
            "router": "nginx",
            "router_port": router_port,
            "drain_seconds": 0.2,
            "grace_seconds": 2,
            "max_surge": 2,
        },
        "health_check": {"path": "/health", "timeout": 20, "interval": 0.05},
    }
    svc = api.ok(api.post("/services", body), 201)
    for version, ref, digest in (("v1.0.0", ref1, digest1), ("v2.0.0", ref2, digest2)):
        art = {
            "service": svc["id"],
            "version": version,
            "commit_sha": SHA,
            "image_uri": ref,
            "image_digest": digest,
        }
        api.ok(api.post("/artifacts", art), 201)


async def _deploy(api: Api, engine: Engine, version: str) -> str:
    dep = await asyncio.to_thread(
        lambda: api.ok(api.post("/deployments", {"service": "web", "version": version}), 201)
    )
    assert await engine.claim(uuid.UUID(dep["id"]))
    return await engine.run(uuid.UUID(dep["id"]))


async def _running(db: Database) -> list[Replica]:
    async with db.session(write=False) as session:
        return list(await session.scalars(sa.select(Replica).where(Replica.status == "running")))


def _inspect(container_id: str) -> dict[str, Any]:
    out = container_image.podman("container", "inspect", container_id, check=False).stdout
    found = json.loads(out) if out.strip() else []
    return found[0] if found else {}


@one_store
def test_containers_over_two_ssh_hosts(
    netns_hosts: Any,  # first: its hosts go after the containers are removed
    containers_removed: list[str],
    sample_images: Any,
    api: Api,
    db_url: str,
    tmp_path: Path,
) -> None:
    hosts: Hosts = netns_hosts(2)
    router_port = free_port()
    _setup(api, sample_images, router_port)
    containers_removed.append(api.ok(api.get("/services/web"))["id"])
    (_, digest1), (_, digest2) = sample_images
    data_dir = tmp_path / "data"
    Recording.sent, Recording.inputs = [], []
    pool = TransportPool(factory=lambda access: Recording(access))

    async def scenario() -> None:
        db = Database(db_url)
        engine = Engine(db, data_dir, transports=pool)
        supervisor = Supervisor(engine, Tasks())
        try:
            addresses = await _register(db, engine.keyring(), hosts)
            assert await _deploy(api, engine, "v1.0.0") == "success"
            v1 = await _running(db)
            assert sorted(addresses[r.node_id] for r in v1 if r.node_id) == sorted(
                [h.address for h in hosts] * 2
            )
            for row in v1:  # published on its host's address, pinned to the checked image
                found = _inspect(row.container_id or "")
                assert found["Config"]["Labels"]["pilothouse.node"] == str(row.node_id)
                assert row.image_digest == digest1
                binding = found["NetworkSettings"]["Ports"]["8000/tcp"][0]
                assert binding["HostIp"] == addresses[row.node_id]
                assert int(binding["HostPort"]) == row.ports["http"]
            config = next((data_dir / "nginx" / "services").glob("*.conf")).read_text()
            for row in v1:
                assert f"{addresses[row.node_id]}:{row.ports['http']}" in config

            async with httpx.AsyncClient() as client:
                got = await client.get(f"http://127.0.0.1:{router_port}/env/API_KEY")
                assert got.json()["sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()
                versions = {
                    (await client.get(f"http://127.0.0.1:{router_port}/")).json()["version"]
                    for _ in range(8)
                }
                assert versions == {"v1.0.0"}

            # v2 (another image) across both hosts under load: no request fails.
            with Load(router_port) as load:
                await asyncio.sleep(0.3)
                assert await _deploy(api, engine, "v2.0.0") == "success"
                await asyncio.sleep(0.3)
            assert load.result.failed == 0, load.result
            v2 = await _running(db)
            assert len(v2) == 4 and {r.image_digest for r in v2} == {digest2}
            assert sorted(addresses[r.node_id] for r in v2 if r.node_id) == sorted(
                [h.address for h in hosts] * 2
            )
            assert not any(_inspect(r.container_id or "") for r in v1)  # removed on their hosts

            # A crash on a host: the container is killed there; restarted on the same node.
            victim = v2[0]
            host = next(h for h in hosts if h.address == addresses[victim.node_id])
            killed = host.exec("podman", "kill", victim.container_id or "")
            assert killed.returncode == 0, killed.stderr

            async def restarted() -> Replica | None:
                await supervisor.supervise()
                async with db.session(write=False) as session:
                    row = await session.get(Replica, victim.id)
                assert row is not None
                done = row.status == "running" and row.container_id != victim.container_id
                return row if done else None

            deadline = time.monotonic() + 30
            while (again := await restarted()) is None:
                assert time.monotonic() < deadline, "the killed container must be restarted"
                await asyncio.sleep(0.3)
            assert again.node_id == victim.node_id and again.restart_count == 1
            assert "exited with status" in (again.restart_reason or ""), again.restart_reason
            config = next((data_dir / "nginx" / "services").glob("*.conf")).read_text()
            assert f"{addresses[again.node_id]}:{again.ports['http']}" in config

            # The driver samples each node's containers from one listing per node.
            driver: Any = engine.drivers["container"]
            figures = await driver.status([replica_info(r) for r in await _running(db)])
            assert all(f["alive"] for f in figures.values())

            # The secret went over stdin only: on no argv sent to a host; the app printed it
            # (SAMPLE_PRINT_ENV) and the relayed log has it scrubbed.
            assert Recording.sent and all(SECRET not in " ".join(a) for a in Recording.sent)
            assert any(SECRET.encode() in data for data in Recording.inputs)
            assert any("--env-file" in a and "/dev/stdin" in a for a in Recording.sent)
            logged = Path(again.log_path or "").read_text()
            assert "env API_KEY=" in logged and SECRET not in logged

            # Fencing a node that came back: containers of replicas not kept are removed.
            live = await _running(db)
            node = pool.known(again.node_id)
            assert node is not None
            assert await driver.fence(node, {r.id for r in live}, grace=0) == []
            stray = next(r for r in live if r.node_id == again.node_id)
            assert await driver.fence(node, {r.id for r in live} - {stray.id}, grace=0) == [
                stray.id
            ]
            assert not _inspect(stray.container_id or "")
            assert all(_inspect(r.container_id or "") for r in live if r.id != stray.id)
        finally:
            NginxRouter(data_dir / "nginx").kill()
            await engine.drivers["container"].close()  # type: ignore[attr-defined]
            await pool.close()
            await db.dispose()

    asyncio.run(scenario())
