"""Hosts over SSH as nodes, against real sshd's in network namespaces and a real store.

- `node add` through the CLI: the first contact is refused with the fingerprint and the exact
  `--trust` to pass, a wrong `--trust` is refused naming both, an operator is refused; with the
  right fingerprint the node is stored with its detected capacity and python3, the client key
  sealed (not in the row in clear, not in any response); `node remove` is refused while a live
  replica is on it.
- Host failure: a host whose link is cut becomes unreachable after node_unreachable_after, its
  live replicas are failed ("lost: node NAME unreachable"), a replacement rollout of the same
  version is requested, one alert goes out; restored, it is ready again and the hook for
  fencing runs. One worker acts per node and slot.
- The store accepts the new status and refuses an unknown transport (both stores).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pilothouse.access import SYSTEM
from pilothouse.alerts import service as alerts
from pilothouse.artifacts.models import Artifact
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import load_keyring, open_value, rotate_key_file
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.deployments.models import Deployment
from pilothouse.drivers.transport import Transport
from pilothouse.nodes import service as nodes
from pilothouse.nodes import watch as watching
from pilothouse.replicas import service as replicas
from pilothouse.replicas.models import Node, Replica
from pilothouse.rotation import reseal_all
from tests.alerts.test_channels import Receiver
from tests.conftest import Api, LiveServer, one_store
from tests.support.netns import Hosts
from tests.test_cli import Cli


def _key_body(private_key: str) -> str:
    return "".join(private_key.strip().splitlines()[1:-1])


async def _row(db: Database, name: str) -> Node:
    async with db.session(write=False) as session:
        node = await session.scalar(sa.select(Node).where(Node.name == name))
        assert node is not None
        return node


@one_store
async def test_node_add_through_the_cli(
    netns_hosts: Callable[[int], Hosts],
    live_server: LiveServer,
    admin_token: str,
    settings: Settings,
    db: Database,
    tmp_path: Path,
) -> None:
    host, other = netns_hosts(2)
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(host.private_key)
    cli = Cli(live_server.url, admin_token, tmp_path)
    add = ["node", "add", "web-2", "--ssh", f"root@{host.address}", "--key", str(key_file)]

    first = cli.run(*add, ok=False).stderr
    assert "first contact" in first and f"--trust {host.fingerprint}" in first
    wrong = cli.run(*add, "--trust", other.fingerprint, ok=False).stderr
    assert host.fingerprint in wrong and other.fingerprint in wrong and "refused" in wrong
    client = httpx.Client(base_url=f"{live_server.url}/api/v1", timeout=30)
    admin = {"Authorization": f"Bearer {admin_token}"}
    user = client.post("/users", json={"name": "ops", "role": "operator"}, headers=admin).json()
    body = {
        "name": "web-2",
        "address": host.address,
        "private_key": host.private_key,
        "trust": host.fingerprint,
    }
    denied = client.post(
        "/nodes", json=body, headers={"Authorization": f"Bearer {user['token']['token']}"}
    )
    assert denied.status_code == 403 and "needs 'admin'" in denied.text
    assert "web-2" not in [n["name"] for n in client.get("/nodes", headers=admin).json()]

    added = cli.run(*add, "--trust", host.fingerprint, "--label", "zone=b").stdout
    assert "node web-2 added" in added and host.fingerprint in added
    listed = client.get("/nodes", headers=admin)
    shown = client.get("/nodes/web-2", headers=admin).json()
    assert shown["transport"] == "ssh" and shown["status"] == "ready"
    assert shown["address"] == host.address and shown["ssh_user"] == "root"
    assert shown["host_key_fingerprint"] == host.fingerprint
    assert shown["labels"] == {"zone": "b"}
    assert shown["capacity"]["cpu_cores"] > 0 and shown["capacity"]["memory_mb"] > 0
    assert shown["capacity"]["storage_gb"] > 0 and shown["software"]["python3"]
    everything = listed.text + json.dumps(shown) + added
    assert _key_body(host.private_key) not in everything and "PRIVATE KEY" not in everything

    row = await _row(db, "web-2")
    assert row.private_key_sealed and _key_body(host.private_key) not in row.private_key_sealed
    keyring = load_keyring(None, settings.master_key_path)
    assert open_value(row.private_key_sealed, keyring) == host.private_key
    access = nodes.access_of(row, keyring)
    assert (access.kind, access.address, access.ssh_port) == ("ssh", host.address, 22)
    assert "PRIVATE" not in repr(access)
    # `keys rotate` re-seals it with the new key
    new_kid, _ = rotate_key_file(settings.master_key_path)
    rotated = load_keyring(None, settings.master_key_path)
    assert await reseal_all(db, rotated) >= 1
    row = await _row(db, "web-2")
    assert row.key_id == new_kid and row.private_key_sealed
    assert open_value(row.private_key_sealed, rotated) == host.private_key

    # Not removable while a live replica is on it; removable once it stopped.
    client.post("/environments", json={"name": "prod", "type": "production"}, headers=admin)
    svc = client.post(
        "/services",
        json={"environment": "prod", "name": "api", "command": "run {port}"},
        headers=admin,
    ).json()
    async with db.session() as session:
        replica = await replicas.create_replica(
            session, uuid.UUID(svc["id"]), actor=SYSTEM, node_id=row.id
        )
    refused = cli.run("node", "remove", "web-2", ok=False).stderr
    assert "1 live replica" in refused and "api x1" in refused
    async with db.session() as session:
        held = await session.get(Replica, replica.id)
        assert held is not None
        await replicas.transition(session, held, "stopped", actor=SYSTEM)
    assert client.delete("/nodes/web-2", headers=admin).status_code == 204
    assert "web-2" not in [n["name"] for n in client.get("/nodes", headers=admin).json()]
    client.close()


def _add(api: Api, name: str, host: Any, private_key: str) -> dict[str, Any]:
    body = {
        "name": name,
        "address": host.address,
        "private_key": private_key,
        "trust": host.fingerprint,
    }
    node: dict[str, Any] = api.ok(api.post("/nodes", body), 201)
    assert "private_key" not in node and private_key not in json.dumps(node)
    return node


#: The watchers' slot (3 s in production): what is claimed is what a slot of any length does,
#: and a host is lost after `unreachable_after` of silence whatever the slot.
PROBE_EVERY = 0.5


async def _until(
    watch: watching.NodeWatch, verdict: str, seconds: float = 25.0
) -> watching.Outcome:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for outcome in await watch.tick():
            if outcome.verdict == verdict:
                return outcome
        await asyncio.sleep(PROBE_EVERY / 2)
    raise AssertionError(f"no {verdict!r} within {seconds} s")


@one_store
async def test_unreachable_host_lost_replaced_and_back(
    netns_hosts: Callable[[int], Hosts],
    api: Api,
    world: dict[str, Any],
    settings: Settings,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alerts, "RETRY_DELAYS", (0.0, 0.0))
    returned: list[uuid.UUID] = []

    async def fence(db: Database, node_id: uuid.UUID, transport: Transport, **_: Any) -> None:
        assert (await transport.run(["true"])).exit_status == 0
        returned.append(node_id)

    monkeypatch.setattr(watching, "on_node_returned", fence)
    hosts = netns_hosts(2)
    one, two = (_add(api, h.name, h, hosts.private_key) for h in hosts)
    receiver = Receiver(204)
    api.ok(
        api.post(
            "/channels", {"name": "oncall", "kind": "webhook", "config": {"url": receiver.url}}
        ),
        201,
    )
    service_id = uuid.UUID(world["service"]["id"])
    async with db.session() as session:
        await session.execute(
            sa.update(Artifact).where(Artifact.version == "v1.0.0").values(deployed=True)
        )
        placed = []
        for node in (one, one, two):
            replica = await replicas.create_replica(
                session, service_id, actor=SYSTEM, node_id=uuid.UUID(node["id"]), version="v1.0.0"
            )
            replica.keep_running = True
            await replicas.transition(session, replica, "starting", actor=SYSTEM)
            await replicas.transition(session, replica, "running", actor=SYSTEM)
            placed.append(replica.id)

    keyring = load_keyring(None, settings.master_key_path)
    watch = watching.NodeWatch(
        db,
        Leases(db, owner="w1"),
        unreachable_after=2.0,
        probe_timeout=4.0,  # a first probe under load may take a while: not a lost node
        keyring=lambda: keyring,
        probe_every=PROBE_EVERY,
    )
    rival = watching.NodeWatch(
        db,
        Leases(db, owner="w2"),
        unreachable_after=2.0,
        probe_timeout=4.0,  # a first probe under load may take a while: not a lost node
        keyring=lambda: keyring,
        probe_every=PROBE_EVERY,
    )
    try:
        slot = utcnow()  # both ticks in the same slot, whatever the wall clock does meanwhile
        seen = await watch.tick(slot)
        assert sorted(o.verdict for o in seen) == ["seen", "seen"]
        assert await rival.tick(slot) == []  # this slot's probes are w1's

        hosts[0].cut()
        lost = await _until(watch, "lost")
        assert (lost.node, lost.failed_replicas) == ("h1", 2)
        assert len(lost.replacements) == 1 and lost.not_replaced == []
        row = await _row(db, "h1")
        assert row.status == "unreachable" and "no answer since" in (row.status_reason or "")
        async with db.session(write=False) as session:
            rows = {r.id: r for r in await session.scalars(sa.select(Replica))}
            scale = (
                await session.scalars(
                    sa.select(Deployment).where(Deployment.service_id == service_id)
                )
            ).all()
        assert [rows[i].status for i in placed] == ["failed", "failed", "running"]
        assert rows[placed[0]].restart_reason == "lost: node h1 unreachable"
        assert not rows[placed[0]].keep_running and rows[placed[2]].keep_running
        assert [(d.event_type, d.version, d.status, d.triggered_by) for d in scale] == [
            ("scale", "v1.0.0", "pending", "automated")
        ]
        assert (await _row(db, "h2")).status == "ready"
        await alerts.settle()
        down = [b for b in receiver.bodies if b["event"] == "node_unreachable"]
        assert len(down) == 1 and down[0]["node"] == "h1" and down[0]["replicas_lost"] == 2
        assert "unreachable" in down[0]["text"]

        hosts[0].restore()
        back = await _until(watch, "returned")
        assert back.node == "h1"
        assert (await _row(db, "h1")).status == "ready"
        assert returned == [uuid.UUID(one["id"])]
        await alerts.settle()
        assert [b["event"] for b in receiver.bodies] == ["node_unreachable", "node_ready"]
    finally:
        await watch.close()
        await rival.close()
        receiver.close()


@pytest.mark.parametrize(
    ("column", "value", "accepted"),
    [
        ("status", "unreachable", True),
        ("status", "lost", False),
        ("transport", "telnet", False),
    ],
)
async def test_store_checks_node_status_and_transport(
    db: Database, column: str, value: str, accepted: bool
) -> None:
    async with db.session() as session:
        await nodes.register(session, "local", capacity={"cpu_cores": 1.0})
    try:
        async with db.session() as session:
            await session.execute(sa.update(Node).values({column: value}))
    except sa.exc.IntegrityError:
        assert not accepted
    else:
        assert accepted
