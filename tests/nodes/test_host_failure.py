"""What follows a host failure, on both stores, without SSH (the probe's outcome is applied
with `NodeWatch.settle`, as `tick` does once a probe answered or not):

- a lost node keeps a "fence pending" mark (committed with the replicas it failed); the node
  that answers again is fenced at every answered probe until fencing succeeded (a fencing
  that raises, or a worker that dies before it ran, leaves the mark);
- `node remove` is refused while the mark is set (409 saying what to do), `force` overrides;
- a replacement not made when the node was lost (a rollout was in progress) is requested
  again once the service has no rollout in progress and is still below its target;
- the supervisor re-routes a service whose replicas were lost at once: nginx no longer lists
  the lost backend, although no replacement was made.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse.access import SYSTEM
from pilothouse.artifacts.models import Artifact
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import seal_value
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.core.loops import Tasks
from pilothouse.deployments.engine import Engine
from pilothouse.deployments.models import Deployment
from pilothouse.deployments.supervisor import Supervisor
from pilothouse.drivers.nginx import NginxRouter
from pilothouse.drivers.transport import LocalTransport, NodeAccess, Transport, TransportPool
from pilothouse.nodes import service as nodes
from pilothouse.nodes import watch as watching
from pilothouse.replicas import service as replicas
from pilothouse.replicas.models import Node
from pilothouse.services.models import Service
from tests.conftest import Api, free_port, one_store

PY = {"python3": "3.11.2", "podman": None}


async def _host(db: Database, name: str, address: str, key: str | None = None) -> uuid.UUID:
    """A host as `node add --ssh` records it (it is never reached here)."""
    async with db.session() as session:
        node = await nodes.register(
            session, name, capacity={"cpu_cores": 8.0, "memory_mb": 8192, "storage_gb": 100}
        )
        node.address, node.transport, node.ssh_user, node.software = address, "ssh", "root", PY
        if key is not None:
            node.private_key_sealed = key
        return node.id


async def _running(
    db: Database, service_id: uuid.UUID, node_id: uuid.UUID, count: int, port: int = 0
) -> list[uuid.UUID]:
    async with db.session() as session:
        made = []
        for i in range(count):
            replica = await replicas.create_replica(
                session, service_id, actor=SYSTEM, node_id=node_id, version="v1.0.0"
            )
            replica.keep_running = True
            replica.ports = {"http": port + i} if port else {}
            await replicas.transition(session, replica, "starting", actor=SYSTEM)
            await replicas.transition(session, replica, "running", actor=SYSTEM)
            made.append(replica.id)
        return made


async def _live(db: Database, service_id: uuid.UUID, target: int) -> None:
    async with db.session() as session:
        await session.execute(
            sa.update(Artifact).where(Artifact.version == "v1.0.0").values(deployed=True)
        )
        await session.execute(
            sa.update(Service).where(Service.id == service_id).values(target_replicas=target)
        )


def _watch(db: Database) -> watching.NodeWatch:
    return watching.NodeWatch(db, Leases(db, owner="w1"), unreachable_after=2.0)


def _access(node_id: uuid.UUID, name: str) -> NodeAccess:
    """The node's access for the fencing stand-in (which never uses the transport)."""
    return NodeAccess(id=node_id, name=name, kind="local", address="127.0.0.1")


async def _lose(watch: watching.NodeWatch, node_id: uuid.UUID) -> watching.Outcome:
    outcome = await watch.settle(node_id, "cut", utcnow() + timedelta(seconds=10))
    assert outcome is not None and outcome.verdict == "lost"
    return outcome


async def _node(db: Database, node_id: uuid.UUID) -> Node:
    async with db.session(write=False) as session:
        node = await session.get(Node, node_id)
        assert node is not None
        return node


async def test_fencing_is_retried_until_it_succeeded(
    api: Api, world: dict[str, Any], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_id = uuid.UUID(world["service"]["id"])
    h1 = await _host(db, "h1", "192.0.2.10")
    await _running(db, service_id, h1, 1)
    watch = _watch(db)
    calls: list[str] = []

    async def fence(db: Database, node_id: uuid.UUID, transport: Transport, **_: Any) -> list[Any]:
        calls.append("fence")
        if len(calls) == 1:
            raise RuntimeError("the listing failed")
        return []

    monkeypatch.setattr(watching, "on_node_returned", fence)
    watch.pool = TransportPool(lambda access: LocalTransport(access.name, access.address))
    try:
        await _lose(watch, h1)
        assert (await _node(db, h1)).fence_pending_since is not None
        back = await watch.settle(h1, None, utcnow())
        assert back is not None and (back.verdict, back.fence) == ("returned", True)
        # the worker died here (ready committed, fencing never ran): the next probe fences
        seen = await watch.settle(h1, None, utcnow())
        assert seen is not None and (seen.verdict, seen.fence) == ("seen", True)
        await watch._after(seen, h1, _access(h1, "h1"))  # fencing raises: still pending
        assert calls == ["fence"] and (await _node(db, h1)).fence_pending_since is not None
        again = await watch.settle(h1, None, utcnow())
        assert again is not None and again.fence
        await watch._after(again, h1, _access(h1, "h1"))
        assert calls == ["fence", "fence"] and (await _node(db, h1)).fence_pending_since is None
        done = await watch.settle(h1, None, utcnow())
        assert done is not None and not done.fence
    finally:
        await watch.close()


async def test_remove_is_refused_while_lost_replicas_are_not_fenced(
    api: Api, world: dict[str, Any], db: Database
) -> None:
    service_id = uuid.UUID(world["service"]["id"])
    h1 = await _host(db, "h1", "192.0.2.10")
    empty = await _host(db, "h2", "192.0.2.11")
    await _running(db, service_id, h1, 2)
    watch = _watch(db)
    try:
        await _lose(watch, h1)
        lost_empty = await _lose(watch, empty)
    finally:
        await watch.close()
    assert lost_empty.failed_replicas == 0
    assert api.delete("/nodes/h2").status_code == 204  # nothing ran there: nothing to fence
    refused = api.delete("/nodes/h1")
    assert refused.status_code == 409, refused.text
    message = refused.json()["message"]
    assert "cannot go from unreachable to removed" in message
    assert "bring the host back" in message and "force" in message
    async with db.session() as session:  # it answers: fenced at the next probe
        await session.execute(sa.update(Node).where(Node.id == h1).values(status="ready"))
    refused = api.delete("/nodes/h1")
    assert refused.status_code == 409 and "try again" in refused.json()["message"]
    assert api.delete("/nodes/h1?force=true").status_code == 204


async def test_replacement_is_retried_once_the_rollout_in_progress_ended(
    api: Api, world: dict[str, Any], db: Database
) -> None:
    service_id = uuid.UUID(world["service"]["id"])
    h1 = await _host(db, "h1", "192.0.2.10")
    await _host(db, "h2", "192.0.2.11")
    await _live(db, service_id, 2)
    await _running(db, service_id, h1, 2)
    rollout = api.ok(api.post("/deployments", {"service": "web", "version": "v1.1.0"}), 201)
    watch = _watch(db)
    try:
        lost = await _lose(watch, h1)
        assert lost.replacements == [] and len(lost.not_replaced) == 1
        assert await watch.replace_short() == []  # still in progress
        async with db.session() as session:
            await session.execute(
                sa.update(Deployment)
                .where(Deployment.id == uuid.UUID(rollout["id"]))
                .values(status="failed")
            )
        again = await watch.replace_short()
        assert len(again) == 1 and again[0].startswith("web: deployment ")
        assert await watch.replace_short() == []  # the replacement is in progress now
        async with db.session() as session:
            await session.execute(
                sa.update(Deployment)
                .where(Deployment.event_type == "scale")
                .values(status="failed")
            )
        assert await watch.replace_short() == []  # made once per loss, not redone
    finally:
        await watch.close()
    async with db.session(write=False) as session:
        made = (
            await session.scalars(sa.select(Deployment).where(Deployment.event_type == "scale"))
        ).all()
    assert [(d.version, d.triggered_by) for d in made] == [("v1.0.0", "automated")]


@one_store
@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
async def test_lost_backends_leave_the_router_without_a_replacement(
    api: Api, db: Database, tmp_path: Path
) -> None:
    router_port = free_port()
    api.ok(api.post("/environments", {"name": "prod", "driver": "process"}), 201)
    body = {
        "environment": "prod",
        "name": "web",
        "command": "run {port}",
        "target_replicas": 2,
        "driver_config": {"router": "nginx", "router_port": router_port},
    }
    svc = api.ok(api.post("/services", body), 201)
    service_id = uuid.UUID(svc["id"])
    async with db.session() as session:
        await session.execute(
            sa.update(Service).where(Service.id == service_id).values(status="running")
        )
    engine = Engine(db, tmp_path / "data")
    supervisor = Supervisor(engine, Tasks())
    key = seal_value("not a real key", engine.keyring())
    h1 = await _host(db, "h1", "127.0.0.2", key)
    h2 = await _host(db, "h2", "127.0.0.3", key)
    await _running(db, service_id, h1, 1, port=41001)
    await _running(db, service_id, h2, 1, port=41002)
    watch = _watch(db)
    conf = tmp_path / "data" / "nginx" / "services"
    try:
        await supervisor.restore_router()
        text = next(conf.glob("*.conf")).read_text()
        assert "127.0.0.2:41001" in text and "127.0.0.3:41002" in text
        lost = await _lose(watch, h1)  # no live release: no replacement is made
        assert lost.replacements == [] and lost.not_replaced
        await supervisor._reroute_dropped()
        text = next(conf.glob("*.conf")).read_text()
        assert "127.0.0.2:41001" not in text and "127.0.0.3:41002" in text
    finally:
        await watch.close()
        NginxRouter(tmp_path / "data" / "nginx").kill()
        await engine.drivers["process"].close()  # type: ignore[attr-defined]
        await asyncio.sleep(0)


@one_store
async def test_add_racing_another_of_the_same_name_is_a_conflict(
    netns_hosts: Any,
    api: Api,
    settings: Any,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pilothouse.core.crypto import load_keyring
    from pilothouse.errors import Conflict

    host = netns_hosts(1)[0]
    spec = nodes.HostSpec(
        "h1", host.address, host.private_key, trust=host.fingerprint
    )  # both `node add` passed the name check; the other one stored its row first

    async def free(session: Any, name: str) -> None:
        return None

    monkeypatch.setattr(nodes, "_name_free", free)
    await _host(db, "h1", "192.0.2.10")
    keyring = load_keyring(None, settings.master_key_path)
    with pytest.raises(Conflict, match="a node named 'h1' exists already"):
        async with db.session() as session:
            await nodes.add_host(session, SYSTEM, keyring, spec)
    async with db.session(write=False) as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Node)) == 1
