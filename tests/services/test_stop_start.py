"""`service stop` / `service start` with real processes, a real nginx and pilothouse as a real
subprocess (issue 13.6): stop really stops the replicas and the router entry, the monitor shows
the service as stopped and stopped time is not downtime, start brings the live release back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, one_store
from tests.engine_support import Client, alive

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def service_history(client: Client, name: str) -> list[str]:
    return [h["to_status"] for h in client.ok("GET", f"/history/service/{name}")]


def no_replica_comes_back(client: Client, pids: list[int], cycles: int = 3) -> None:
    """Across a few supervisor cycles (1 s each), no replica of the service runs again."""
    for _ in range(cycles):
        time.sleep(1.0)
        assert client.replicas("web") == [], "the supervisor must not restart a stopped service"
        assert not any(alive(pid) for pid in pids)


@one_store
def test_stop_and_start_with_real_processes_and_nginx(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    router = free_port()
    client.setup_service(replicas=2, router_port=router)
    assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"
    before = client.replicas("web")
    pids = [r["pid"] for r in before]
    ports = [int(r["ports"]["http"]) for r in before]
    assert httpx.get(f"http://127.0.0.1:{router}/").json()["version"] == "v1.0.0"

    stopped = client.ok("POST", "/services/web/stop", 202, json={"reason": "night"})
    assert stopped["status"] == "stopped" and stopped["deployment_id"]
    stop = client.wait(stopped["deployment_id"])
    assert stop["status"] == "success" and stop["event_type"] == "stop", stop
    assert stop["version"] == "v1.0.0"

    # The processes are gone, their ports and the router's port closed.
    assert not any(alive(pid) for pid in pids)
    assert not any(port_open(port) for port in ports)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{router}/", timeout=2)
    gone = {r["id"]: r for r in client.replicas("web", None)}
    assert {gone[r["id"]]["status"] for r in before} == {"stopped"}
    # The health view says stopped, not down.
    health = client.ok("GET", "/services/web/health")
    assert health["status"] == "stopped" and health["replicas"] == []
    no_replica_comes_back(client, pids)

    # Stopping a stopped service: 409 from what to what.
    again = client.http.post("/services/web/stop")
    assert again.status_code == 409, again.text
    assert "cannot go from 'stopped' to 'stopped'" in again.json()["message"]
    assert again.json()["detail"] == {"entity": "service", "from": "stopped", "to": "stopped"}
    # Deploys, rollbacks and restarts are refused until it is started.
    for body in (
        {"service": "web", "version": "v2.0.0"},
        {"service": "web", "version": "v1.0.0", "event_type": "restart"},
    ):
        refused = client.http.post("/deployments", json=body)
        assert refused.status_code == 409, refused.text
        assert refused.json()["message"].startswith("service web is stopped; start it first")
    assert client.http.post("/services/web/rollback", json={}).status_code == 409
    # The status cannot be changed around the engine.
    sneaky = client.http.post("/services/web/transition", json={"to": "scheduled"})
    assert sneaky.status_code == 409 and "service start" in sneaky.json()["message"]
    # Scaling a stopped service records the count for the start; nothing starts now.
    scaled = client.ok("POST", "/services/web/scale", json={"target_replicas": 3})
    assert scaled["target_replicas"] == 3 and scaled["deployment_id"] is None
    assert client.replicas("web") == []

    started = client.ok("POST", "/services/web/start", 202, json={})
    start = client.wait(started["deployment_id"])
    assert start["status"] == "success" and start["event_type"] == "start", start
    live = client.replicas("web")
    assert len(live) == 3 and {r["version"] for r in live} == {"v1.0.0"}
    assert all(alive(r["pid"]) for r in live)
    assert httpx.get(f"http://127.0.0.1:{router}/").json()["version"] == "v1.0.0"
    assert client.ok("GET", "/services/web")["status"] == "running"
    assert service_history(client, "web")[-3:] == ["stopped", "scheduled", "running"]
    restart = client.http.post("/services/web/start")
    assert restart.status_code == 409 and "is running, not stopped" in restart.json()["message"]

    # Recorded: the two deployments, the service's history with its reason, the audit trail.
    kinds = [d["event_type"] for d in client.ok("GET", "/deployments")["items"]]
    assert kinds[:2] == ["start", "stop"]
    changes = client.ok("GET", "/history/service/web")
    to_stopped = next(h for h in changes if h["to_status"] == "stopped")
    assert "night" in to_stopped["reason"] and stop["id"] in to_stopped["reason"]
    audit = client.ok("GET", "/audit", params={"entity_type": "service"})
    actions = [a["action"] for a in audit]
    assert "stop" in actions and "start" in actions

    # Stopped time is not downtime.
    report = client.ok("GET", "/services/web/uptime")
    assert report["downtime_minutes"] == 0 and report["stopped_minutes"] > 0
    # A deploy works again once it runs.
    assert client.wait(client.deploy("web", "v2.0.0")["id"])["status"] == "success"


@one_store
def test_a_crash_during_a_stop_is_not_restarted(stack: dict[str, Any]) -> None:
    """A replica killed just before the stop (its restart due in a second): after the stop no
    process of the service runs, and none comes back."""
    client: Client = stack["client"]
    client.setup_service(replicas=2)
    assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"
    pids = [r["pid"] for r in client.replicas("web")]
    os.kill(pids[0], signal.SIGKILL)
    stopped = client.ok("POST", "/services/web/stop", 202)
    assert client.wait(stopped["deployment_id"])["status"] == "success"
    deadline = time.monotonic() + 20
    while client.replicas("web", "running") or client.replicas("web", "starting"):
        assert time.monotonic() < deadline, client.replicas("web", None)
        time.sleep(0.2)
    every = client.replicas("web", None)
    no_replica_comes_back(client, pids + [r["pid"] for r in every if r["pid"]])
    assert {r["status"] for r in every} <= {"stopped", "failed"}


@one_store
def test_cli_stop_and_start(stack: dict[str, Any], tmp_path: Path) -> None:
    client: Client = stack["client"]
    client.setup_service(replicas=1)
    assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"
    env = {
        **os.environ,
        "PILOTHOUSE_URL": stack["server"].url,
        "PILOTHOUSE_TOKEN": stack["token"],
        "PILOTHOUSE_CLI_CONFIG": str(tmp_path / "none.json"),
        "COLUMNS": "200",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "pilothouse", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        return proc

    first = cli("service", "stop", "web", "--reason", "maintenance of the host")
    assert first.returncode == 0, first.stderr
    assert "stop of web recorded" in first.stdout
    assert "succeeded: the service is stopped" in first.stdout
    assert "web is stopped" in first.stdout
    second = cli("service", "stop", "web")
    assert second.returncode == 1
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot go from 'stopped' to 'stopped'" in lines[0], lines
    deploy = cli("deploy", "web", "--version", "v2.0.0")
    assert deploy.returncode == 1 and "start it first" in deploy.stderr
    health = cli("health", "web")
    assert health.returncode == 0 and "web: stopped" in health.stdout
    back = cli("service", "start", "web")
    assert back.returncode == 0 and "succeeded" in back.stdout, back.stderr
    assert [r["version"] for r in client.replicas("web")] == ["v1.0.0"]
