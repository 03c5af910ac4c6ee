"""Fencing a returned node covers its containers: on a namespace host reached over SSH, real
podman's pilothouse containers (by the node's label) that the store does not hold live on the
node are removed, with the process replicas' rule, audit entry and alert text; a node without
the engine is fenced of its processes only, quietly."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from pilothouse.access import SYSTEM
from pilothouse.audit.models import AuditEntry
from pilothouse.core.db import Database
from pilothouse.drivers import ssh
from pilothouse.nodes import watch as watching
from pilothouse.replicas import service as replicas
from tests import container_image
from tests.conftest import Api, one_store
from tests.support.netns import Hosts


def _run(image: str, node_id: uuid.UUID, replica_id: uuid.UUID) -> tuple[str, int]:
    """A labelled container as the driver starts one on the node (no network: it only sleeps);
    (its id, its main process's pid)."""
    labels = {
        "pilothouse.node": str(node_id),
        "pilothouse.replica": str(replica_id),
        "pilothouse.release": "1a2b3c4d-rel",
        "pilothouse.version": "v1.0.0",
        "pilothouse.service": "fence-test",
    }
    argv = ["run", "-d", "--network", "none"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    cid = container_image.podman(
        *argv, image, "/usr/bin/python3", "-c", "import time; time.sleep(120)"
    ).stdout.strip()
    pid = container_image.podman("inspect", "--format", "{{.State.Pid}}", cid).stdout
    return cid, int(pid)


def _exists(cid: str) -> bool:
    return container_image.podman("container", "exists", cid, check=False).returncode == 0


@one_store
async def test_returned_node_containers_are_fenced(
    netns_hosts: Callable[[int], Hosts],
    sample_images: Any,
    api: Api,
    world: dict[str, Any],
    db: Database,
) -> None:
    (host,) = hosts = netns_hosts(1)
    body = {
        "name": "h1",
        "address": host.address,
        "private_key": hosts.private_key,
        "trust": host.fingerprint,
    }
    node_id = uuid.UUID(api.ok(api.post("/nodes", body), 201)["id"])
    service_id = uuid.UUID(world["service"]["id"])
    (image, _digest), _ = sample_images
    transport = ssh.SSHTransport(host.access())
    kinds = {"live": "running", "lost": "failed", "alien": None}
    ids = {name: uuid.uuid4() for name in kinds}
    started = {name: _run(image, node_id, ids[name]) for name in kinds}
    try:
        async with db.session() as session:
            for name, status in kinds.items():
                if status is None:
                    continue
                rec = await replicas.create_replica(
                    session,
                    service_id,
                    actor=SYSTEM,
                    id=ids[name],
                    node_id=node_id,
                    version="v1.0.0",
                    pid=started[name][1],
                )
                for step in ["starting", "running", *(["failed"] if status == "failed" else [])]:
                    await replicas.transition(session, rec, step, actor=SYSTEM)

        stopped = await watching.on_node_returned(db, node_id, transport, grace=0)
        assert sorted((s.why, s.container) for s in stopped) == sorted(
            [("failed", started["lost"][0]), ("unknown to the store", started["alien"][0])]
        )
        assert _exists(started["live"][0])
        assert not _exists(started["lost"][0]) and not _exists(started["alien"][0])
        assert watching.fenced_text(stopped).startswith("stopped 2 stray replicas: ")
        async with db.session(write=False) as session:
            entry = await session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "fence"))
        assert entry is not None and entry.entity_id == str(node_id)
        assert {d["container"] for d in (entry.changes or {})["stopped"]} == {
            started["lost"][0],
            started["alien"][0],
        }
        # Nothing stray left; a node without the engine: its processes only, no error.
        assert await watching.on_node_returned(db, node_id, transport, grace=0) == []
        missing = await watching.on_node_returned(
            db, node_id, transport, grace=0, engine="podman-not-installed"
        )
        assert missing == []
    finally:
        ours = [cid for cid, _ in started.values()]
        container_image.podman("rm", "--force", "--ignore", "--time", "0", *ours, check=False)
        await transport.close()
