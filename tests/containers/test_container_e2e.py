"""The container driver end to end with real podman (one store: the store does not matter here).

One scenario on the sample image (tests/container_image.py, built once and cached): deploy,
roll to a new image under load through the nginx router with no failed request, refuse an
image whose digest is not the artifact's, restart a crashed container, kill and restart a
replica that allocates past `--memory` (recorded as out of memory), keep (adopt) running
containers across a pilothouse restart, refuse a scale beyond the node's capacity with the
shortfall named, and stop with drain and grace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests import container_image
from tests.conftest import SHA, free_port, one_store
from tests.engine_support import Client, Load


def _wait(what: str, check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _setup(client: Client, images: Any, port: int) -> dict[str, Any]:
    (ref1, digest1), (ref2, digest2) = images
    client.ok("POST", "/environments", 201, json={"name": "ctr", "driver": "container"})
    svc = client.ok(
        "POST",
        "/services",
        201,
        json={
            "environment": "ctr",
            "name": "web",
            "image": ref1,
            "target_replicas": 2,
            "resources": {"cpu_cores": 0.5, "memory_mb": 512},
            "driver_config": {
                "router": "nginx",
                "router_port": port,
                "grace_seconds": 2,
                "drain_seconds": 0.1,
                "max_restarts": 10,
            },
            "health_check": {"path": "/health", "timeout": 15, "interval": 0.05},
        },
    )
    for version, ref, digest in (
        ("v1.0.0", ref1, digest1),
        ("v2.0.0", ref2, digest2),
        ("v3.0.0", ref2, digest1),  # the image is not the one the artifact names
    ):
        client.ok(
            "POST",
            "/artifacts",
            201,
            json={
                "service": svc["id"],
                "version": version,
                "commit_sha": SHA,
                "image_uri": ref,
                "image_digest": digest,
            },
        )
    return svc  # type: ignore[no-any-return]


def _container(container_id: str) -> dict[str, Any]:
    import json

    out = container_image.podman("container", "inspect", container_id, check=False).stdout
    found = json.loads(out) if out.strip() else []
    return found[0] if found else {}


@one_store
def test_containers_end_to_end(
    containers_removed: list[str], stack: dict[str, Any], sample_images: Any
) -> None:
    # containers_removed first: its clean-up then runs after the servers have stopped.
    client: Client = stack["client"]
    port = free_port()
    svc = _setup(client, sample_images, port)
    containers_removed.append(svc["id"])
    (_, digest1), (_, digest2) = sample_images

    first = client.wait(client.deploy("web", "v1.0.0")["id"])
    assert first["status"] == "success", first
    v1 = client.replicas("web")
    assert len(v1) == 2 and {r["image_digest"] for r in v1} == {digest1}
    assert all(r["container_id"] and r["node_id"] for r in v1)
    inspected = _container(v1[0]["container_id"])
    assert inspected["Config"]["Labels"]["pilothouse.replica"] == v1[0]["id"]
    assert inspected["HostConfig"]["Memory"] == 512 * 1024 * 1024
    assert inspected["HostConfig"]["NanoCpus"] == 500_000_000
    assert not any("PILOTHOUSE_VERSION" in arg for arg in inspected["Config"].get("Cmd") or [])
    assert httpx.get(f"http://127.0.0.1:{port}/").json()["version"] == "v1.0.0"
    assert not list((stack["data_dir"] / "tmp").glob("env-*"))  # the env-file is gone
    node = client.ok("GET", "/nodes/local")
    assert node["replicas"] == 2 and node["allocated"]["cpu_cores"] == 1.0

    with Load(port) as load:
        time.sleep(0.2)
        second = client.wait(client.deploy("web", "v2.0.0")["id"])
        time.sleep(0.2)
    assert second["status"] == "success", second
    assert load.result.failed == 0, load.result
    v2 = client.replicas("web")
    assert {r["image_digest"] for r in v2} == {digest2} and len(v2) == 2
    _wait("old containers removed", lambda: not any(_container(r["container_id"]) for r in v1))

    # Refused before anything starts; the automatic rollback (to v2, still live) completes it.
    refused = client.wait(client.deploy("web", "v3.0.0")["id"], {"rolled_back"})
    assert "the artifact says " + digest1 in refused["error_message"], refused
    assert {r["id"] for r in client.replicas("web")} == {r["id"] for r in v2}

    # A crash: the container is killed under pilothouse; the supervisor starts a new one.
    victim = v2[0]
    container_image.podman("kill", victim["container_id"])
    back = _wait(
        "crash restart",
        lambda: next(
            (
                r
                for r in client.replicas("web")
                if r["id"] == victim["id"] and r["restart_count"] == 1
            ),
            None,
        ),
    )
    assert back["container_id"] != victim["container_id"]

    # Past --memory: the kernel kills it, the engine says OOMKilled, it is restarted.
    hog = client.replicas("web")[1]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{hog['ports']['http']}/alloc?mb=700", timeout=20)
    oom = _wait(
        "OOM restart",
        lambda: next(
            (r for r in client.replicas("web") if r["id"] == hog["id"] and r["restart_count"] >= 1),
            None,
        ),
    )
    assert "OOM-killed" in (oom["restart_reason"] or ""), oom

    # CPU and memory come from the engine's stats (sampled every few seconds).
    _wait("engine stats", lambda: all(r["memory_mb"] for r in client.replicas("web")), 15)

    # pilothouse restarts: the running containers are adopted, not restarted.
    before = {r["id"]: r["container_id"] for r in client.replicas("web")}
    stack["server"].kill()
    again = Client(stack["spawn"]().url, stack["token"])
    time.sleep(1.5)  # a supervisor pass or two
    assert {r["id"]: r["container_id"] for r in again.replicas("web")} == before

    # Scale beyond capacity: refused with the shortfall named, nothing stopped.
    response = again.http.post("/services/web/scale", json={"target_replicas": 100})
    assert response.status_code == 409, response.text
    assert "node local has" in response.json()["message"]
    assert "x 0.5 CPU" in response.json()["message"]
    assert len(again.replicas("web")) == 2

    stop = again.ok("POST", "/services/web/stop", 202, json={})
    assert again.wait(stop["deployment_id"])["status"] == "success"
    _wait("containers stopped", lambda: not any(_container(c) for c in before.values()))


def test_podman_is_on_path_when_required() -> None:
    if os.environ.get("PILOTHOUSE_REQUIRE_POSTGRES") == "1":
        assert shutil.which("podman"), "podman is required (./dev test installs it)"
    assert subprocess.run(["true"]).returncode == 0
