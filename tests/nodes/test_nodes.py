"""Nodes through the API on both stores: the local host registered with its capacity, the
pre-flight capacity check refusing a scale and a deploy with the shortfall named (409, nothing
changed), allocation vs capacity, and the engine failing at pending when room went away."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pilothouse.core.db import Database
from pilothouse.nodes import service as nodes
from tests.conftest import SHA, Api, one_store


def _set_capacity(db_url: str, capacity: dict[str, float]) -> None:
    async def run() -> None:
        db = Database(db_url)
        try:
            async with db.session() as session:
                await nodes.register(session, "local", capacity=capacity, labels={"zone": "a"})
        finally:
            await db.dispose()

    asyncio.run(run())


def _placed_world(api: Api, *, cpu: float = 1.5) -> dict[str, Any]:
    api.ok(
        api.post(
            "/environments",
            {"name": "prod", "type": "production", "config": {"placement": "binpack"}},
        ),
        201,
    )
    svc = api.ok(
        api.post(
            "/services",
            {
                "environment": "prod",
                "name": "web",
                "command": "run {port}",
                "resources": {"cpu_cores": cpu, "memory_mb": 512},
            },
        ),
        201,
    )
    api.ok(api.post("/artifacts", {"service": svc["id"], "version": "v1", "commit_sha": SHA}), 201)
    return svc


def test_deploy_that_does_not_fit_is_refused_with_the_shortfall(api: Api, db_url: str) -> None:
    # The local host is there before any worker ran, with its detected capacity.
    listed = api.ok(api.get("/nodes"))
    assert [n["name"] for n in listed] == ["local"]
    detected = listed[0]["capacity"]
    assert detected["cpu_cores"] >= 1 and detected["memory_mb"] > 100
    assert detected["storage_gb"] >= 1 and listed[0]["replicas"] == 0
    assert api.get("/nodes/nowhere").status_code == 404
    _set_capacity(db_url, {"cpu_cores": 1.0, "memory_mb": 4096, "storage_gb": 10})
    svc = _placed_world(api)
    api.ok(api.post(f"/services/{svc['id']}/scale", {"target_replicas": 2}))
    refused = api.post("/deployments", {"service": "web", "version": "v1"})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert "needs 2 x 1.5 CPU, node local has 1.0 free" in body["message"]
    assert body["detail"]["shortfall"] == "needs 2 x 1.5 CPU, node local has 1.0 free"
    assert api.ok(api.get("/deployments", params={"service": "web"}))["items"] == []
    shown = api.ok(api.get("/nodes/local"))
    assert shown["replica_list"] == [] and shown["free"]["cpu_cores"] == 1.0
    assert shown["labels"] == {"zone": "a"}


def test_scale_beyond_capacity_is_refused_and_nothing_changes(api: Api, db_url: str) -> None:
    _set_capacity(db_url, {"cpu_cores": 4.0, "memory_mb": 4096, "storage_gb": 10})
    svc = _placed_world(api)
    first = api.ok(api.post("/deployments", {"service": "web", "version": "v1"}), 201)
    assert first["status"] == "pending"
    # Pretend the engine ran it: one running replica on the local node, the artifact live.
    _run_by_hand(db_url, svc["id"], first["id"])
    node = api.ok(api.get("/nodes/local"))
    assert node["allocated"]["cpu_cores"] == 1.5 and node["replicas"] == 1
    refused = api.post("/services/web/scale", {"target_replicas": 3})
    assert refused.status_code == 409, refused.text
    assert "needs 2 x 1.5 CPU, node local has 2.5 free" in refused.json()["message"]
    assert api.ok(api.get("/services/web"))["target_replicas"] == 1  # nothing changed
    fits = api.ok(api.post("/services/web/scale", {"target_replicas": 2}))
    assert fits["deployment_id"] is not None and fits["target_replicas"] == 2


def _run_by_hand(db_url: str, service_id: str, deployment_id: str) -> None:
    import uuid

    from pilothouse.access import system_actor
    from pilothouse.deployments import service as deployments
    from pilothouse.deployments.models import Deployment
    from pilothouse.replicas import service as replicas

    async def run() -> None:
        db = Database(db_url)
        actor = system_actor("engine")
        try:
            async with db.session() as session:
                node_id = await nodes.local_node_id(session)
                replica = await replicas.create_replica(
                    session, uuid.UUID(service_id), actor=actor, version="v1", node_id=node_id
                )
                for to in ("starting", "running"):
                    await replicas.transition(session, replica, to, actor=actor)
                dep = await session.get(Deployment, uuid.UUID(deployment_id))
                assert dep is not None
                for to in ("building", "deploying", "success"):
                    await deployments.transition(session, dep, to, actor=actor)
        finally:
            await db.dispose()

    asyncio.run(run())


@one_store
def test_engine_fails_at_pending_when_room_went_away(api: Api, db_url: str, tmp_path: Path) -> None:
    from pilothouse.deployments.engine import Engine

    _set_capacity(db_url, {"cpu_cores": 4.0, "memory_mb": 4096, "storage_gb": 10})
    _placed_world(api)
    dep = api.ok(api.post("/deployments", {"service": "web", "version": "v1"}), 201)
    _set_capacity(db_url, {"cpu_cores": 1.0, "memory_mb": 4096, "storage_gb": 10})

    async def run() -> str:
        db = Database(db_url)
        try:
            engine = Engine(db, tmp_path / "data")
            import uuid

            assert await engine.claim(uuid.UUID(dep["id"]))
            return await engine.run(uuid.UUID(dep["id"]))
        finally:
            await db.dispose()

    assert asyncio.run(run()) == "failed"
    done = api.ok(api.get(f"/deployments/{dep['id']}"))
    assert done["status"] == "failed"
    assert "needs 1 x 1.5 CPU, node local has 1.0 free" in done["error_message"]
    history = api.ok(api.get(f"/history/deployment/{dep['id']}"))
    pairs = [(h["from_status"], h["to_status"]) for h in history]
    assert ("pending", "failed") in pairs
