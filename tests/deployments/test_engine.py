"""The release engine with real processes, a real nginx and pilothouse as a real subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import free_port, one_store
from tests.engine_support import Client, Load, alive

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def history(client: Client, dep_id: str) -> list[str]:
    return [h["to_status"] for h in client.ok("GET", f"/history/deployment/{dep_id}")]


@one_store
def test_rolling_update_under_load_and_automatic_rollback(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    port = free_port()
    client.setup_service(router_port=port, versions=("v1.0.0", "v2.0.0", "v3.0.0-broken"))

    first = client.wait(client.deploy("web", "v1.0.0")["id"])
    assert first["status"] == "success", first
    assert first["instances_deployed"] == 3 and first["health_check_passed"]
    v1 = client.replicas("web")
    assert len(v1) == 3 and {r["version"] for r in v1} == {"v1.0.0"}
    assert httpx.get(f"http://127.0.0.1:{port}/").json()["version"] == "v1.0.0"

    with Load(port) as load:
        time.sleep(0.3)
        second = client.wait(client.deploy("web", "v2.0.0")["id"])
        time.sleep(0.3)
    assert second["status"] == "success", second
    assert load.result.failed == 0, load.result
    assert load.result.ok > 50 and set(load.result.versions) == {"v1.0.0", "v2.0.0"}
    v2 = client.replicas("web")
    assert len(v2) == 3 and {r["version"] for r in v2} == {"v2.0.0"}
    # Success means traffic is on v2; the old replicas finish draining and stop right after.
    deadline = time.monotonic() + 15
    while any(alive(r["pid"]) for r in v1) or {
        r["status"] for r in client.replicas("web", None) if r["version"] == "v1.0.0"
    } != {"stopped"}:
        assert time.monotonic() < deadline, "old replicas must be stopped"
        time.sleep(0.1)

    with Load(port) as load:
        broken = client.wait(client.deploy("web", "v3.0.0-broken")["id"], {"rolled_back"})
        time.sleep(0.3)
    assert load.result.failed == 0, load.result
    assert set(load.result.versions) == {"v2.0.0"}
    assert "not ready after 3s" in broken["error_message"]
    assert history(client, broken["id"]) == [
        "pending",
        "building",
        "deploying",
        "failed",
        "rolled_back",
    ]
    rollbacks = client.ok("GET", "/deployments", params={"service": "web"})["items"]
    rollback = next(d for d in rollbacks if d["rollback_from"] == broken["id"])
    assert rollback["event_type"] == "rollback" and rollback["status"] == "success"
    assert rollback["version"] == "v2.0.0" and rollback["triggered_by"] == "automated"
    assert {r["pid"] for r in client.replicas("web")} == {r["pid"] for r in v2}
    artifacts = {
        a["version"]: a["deployed"]
        for a in client.ok("GET", "/artifacts", params={"service": "web"})
    }
    assert artifacts == {"v1.0.0": False, "v2.0.0": True, "v3.0.0-broken": False}
    logs = client.ok("GET", f"/deployments/{broken['id']}/logs")["items"]
    assert any("automatic rollback to v2.0.0" in line["message"] for line in logs)
    assert any(line["source"].startswith("replica:") for line in logs)

    again = client.http.post("/deployments", json={"service": "web", "version": "v2.0.0"})
    assert again.status_code == 409 and again.json()["error"] == "already_live"

    # Issue 12.1: a rollback returns to the last release that went live before v2 (v1), never
    # to v3.0.0-broken, which failed and was rolled back automatically.
    refused = client.http.post("/services/web/rollback", json={"to": "v3.0.0-broken"})
    assert refused.status_code == 409 and "never went live" in refused.json()["message"]
    back = client.ok("POST", "/services/web/rollback", 201, json={})
    assert back["version"] == "v1.0.0", back
    assert client.wait(back["id"])["status"] == "success"
    # Success is recorded once traffic is on v1; the v2 replicas finish draining after it
    # (engine: "old replicas stopped"), so the listing converges within a bounded wait.
    deadline = time.monotonic() + 30
    while {r["version"] for r in client.replicas("web")} != {"v1.0.0"}:
        assert time.monotonic() < deadline, client.replicas("web", None)
        time.sleep(0.2)


@one_store
def test_crashed_replica_is_restarted_with_backoff(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    client.setup_service(replicas=2)
    assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"
    victim = client.replicas("web")[0]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        now = {r["id"]: r for r in client.replicas("web", None)}[victim["id"]]
        if now["status"] == "running" and now["restart_count"] == 1:
            break
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    assert now["pid"] != victim["pid"] and alive(now["pid"])
    statuses = [h["to_status"] for h in client.ok("GET", f"/history/replica/{victim['id']}")]
    assert statuses[-3:] == ["failed", "starting", "running"]


def test_killed_pilothouse_mid_rollout_is_reconciled_and_replicas_readopted(
    stack: dict[str, Any],
) -> None:
    client: Client = stack["client"]
    client.setup_service(replicas=2, versions=("v1.0.0", "v2.0.0-slow"), timeout=30)
    assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"
    v1 = {r["id"]: r["pid"] for r in client.replicas("web")}

    slow = client.deploy("web", "v2.0.0-slow")
    deadline = time.monotonic() + 20
    while not client.replicas("web", "starting"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    starting = client.replicas("web", "starting")[0]
    stack["server"].kill()  # pilothouse dies mid-rollout
    assert all(alive(pid) for pid in v1.values()), "replicas outlive pilothouse"

    restarted = stack["spawn"]()
    client = Client(restarted.url, stack["token"])
    dep = client.wait(slow["id"], {"rolled_back", "failed"}, timeout=60)
    assert dep["error_message"] == "interrupted"
    dep = client.wait(slow["id"], {"rolled_back"}, timeout=60)
    assert "deploying" in history(client, slow["id"])
    running = client.replicas("web")
    assert {r["id"]: r["pid"] for r in running} == v1, (
        "the v1 replicas are re-adopted, not restarted"
    )
    deadline = time.monotonic() + 15
    while alive(starting["pid"]):
        assert time.monotonic() < deadline, "the interrupted replica must be stopped"
        time.sleep(0.2)
    assert client.ok("GET", "/services/web")["status"] == "running"


def test_killed_worker_during_a_first_deployment_leaves_the_service_failed(
    stack: dict[str, Any],
) -> None:
    """Issue 12.3: nothing was live before, so nothing can be rolled back to. Reconciliation
    stops what the interrupted rollout started and says so: the service ends `failed` with the
    reason, and is never `running` on the way."""
    client: Client = stack["client"]
    svc = client.setup_service(
        replicas=2,
        versions=("v1.0.0",),
        timeout=30,
        driver_config={"env": {"SAMPLE_READY_DELAY": "2"}},
    )
    first = client.deploy("web", "v1.0.0")
    deadline = time.monotonic() + 30
    while not (client.replicas("web", "running") and client.replicas("web", "starting")):
        assert time.monotonic() < deadline, client.replicas("web", None)
        time.sleep(0.05)
    started = client.replicas("web", None)
    stack["server"].kill()  # the worker dies between the first and the second replica

    restarted = stack["spawn"]()
    client = Client(restarted.url, stack["token"])
    dep = client.wait(first["id"], {"failed", "rolled_back"}, timeout=60)
    assert dep["status"] == "failed" and dep["error_message"] == "interrupted"
    deadline = time.monotonic() + 20
    while any(alive(r["pid"]) for r in started):
        assert time.monotonic() < deadline, "the interrupted rollout's replicas must be stopped"
        time.sleep(0.2)
    assert client.replicas("web") == [] and client.replicas("web", "starting") == []
    service = client.ok("GET", "/services/web")
    assert service["status"] == "failed", service
    changes = client.ok("GET", f"/history/service/{svc['id']}")
    assert "running" not in [h["to_status"] for h in changes], changes
    assert "interrupted" in changes[-1]["reason"] and "nothing is live" in changes[-1]["reason"]
    deployed = [
        a for a in client.ok("GET", "/artifacts", params={"service": "web"}) if a["deployed"]
    ]
    assert deployed == []


@one_store
def test_router_port_is_rechecked_before_a_rollout(stack: dict[str, Any]) -> None:
    """Issue 12.2: a port taken by another process after the service was created fails the
    deployment before anything starts, naming the holder; pilothouse's own router holding the
    service's port is not a conflict; a second service cannot take the port."""
    client: Client = stack["client"]
    port = free_port()
    client.setup_service(replicas=1, router_port=port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        refused = client.wait(client.deploy("web", "v1.0.0")["id"])
    name = psutil.Process(os.getpid()).name()
    assert refused["status"] == "failed"
    assert refused["error_message"] == (
        f"router port {port} is in use on this host by {name} (pid {os.getpid()})"
    )
    assert client.replicas("web", None) == [], "nothing was started"

    assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"
    assert client.wait(client.deploy("web", "v2.0.0")["id"])["status"] == "success"
    assert httpx.get(f"http://127.0.0.1:{port}/").json()["version"] == "v2.0.0"
    client.ok("POST", "/environments", 201, json={"name": "other"})
    taken = client.http.post(
        "/services",
        json={
            "environment": "other",
            "name": "blog",
            "command": "run {port}",
            "driver_config": {"router": "nginx", "router_port": port},
        },
    )
    assert taken.status_code == 409
    assert taken.json()["message"] == (
        f"router port {port} is already used by service 'web' in environment 'dev'"
    )


def test_two_processes_two_deploys_exactly_one_proceeds(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    client.setup_service(replicas=1, versions=("v1.0.0", "v2.0.0"), timeout=10)
    other = Client(stack["spawn"]("api").url, stack["token"])
    results: list[httpx.Response] = []
    barrier = threading.Barrier(2)

    def deploy(c: Client, version: str) -> None:
        barrier.wait()
        results.append(c.http.post("/deployments", json={"service": "web", "version": version}))

    threads = [
        threading.Thread(target=deploy, args=(client, "v1.0.0")),
        threading.Thread(target=deploy, args=(other, "v2.0.0")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409], [r.text for r in results]
    refused = next(r for r in results if r.status_code == 409).json()["message"]
    winner = next(r for r in results if r.status_code == 201).json()
    assert winner["id"] in refused and "active deployment" in refused
    assert client.wait(winner["id"])["status"] == "success"


@one_store
def test_command_driver_deploys_and_rolls_back_by_exit_code(
    stack: dict[str, Any], child_tmp: Path
) -> None:
    client: Client = stack["client"]
    record = child_tmp / "deploys.txt"
    script = (
        f'echo "$PILOTHOUSE_EVENT $PILOTHOUSE_SERVICE $PILOTHOUSE_VERSION '
        f'$PILOTHOUSE_REPLICAS" >> {record}; '
        'echo "shipping $PILOTHOUSE_VERSION"; test "$PILOTHOUSE_VERSION" != v2.0.0'
    )
    client.setup_service(
        "paas",
        replicas=2,
        driver="command",
        command=None,
        env_name="paas-env",
        driver_config={"deploy_command": script, "timeout": 20},
    )
    first = client.wait(client.deploy("paas", "v1.0.0")["id"])
    assert first["status"] == "success"
    second = client.wait(client.deploy("paas", "v2.0.0")["id"], {"rolled_back"})
    assert second["error_message"] == "deploy command exited with status 1"
    assert record.read_text().splitlines() == [
        "deploy paas v1.0.0 2",
        "deploy paas v2.0.0 2",
        "rollback paas v1.0.0 2",
    ]
    logs = client.ok("GET", f"/deployments/{first['id']}/logs")["items"]
    assert any(line["message"] == "shipping v1.0.0" for line in logs)


@one_store
def test_build_and_migration_hooks(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    client.setup_service(
        replicas=1,
        driver_config={
            "build_command": "echo building $PILOTHOUSE_VERSION",
            "migration_command": "echo applying; echo 2026_11_22_add_orders",
        },
    )
    dep = client.wait(client.deploy("web", "v1.0.0")["id"])
    assert dep["status"] == "success"
    assert dep["migration_applied"] is True and dep["migration_version"] == "2026_11_22_add_orders"
    assert dep["build_time_ms"] is not None
    logs = client.ok("GET", f"/deployments/{dep['id']}/logs")["items"]
    assert {"build", "migration"} <= {line["source"] for line in logs}
    assert any(line["message"] == "building v1.0.0" for line in logs)

    client.ok("PATCH", "/services/web", json={"driver_config": {"build_command": "exit 7"}})
    failed = client.wait(client.deploy("web", "v2.0.0")["id"], {"rolled_back"})
    assert failed["error_message"] == "build command exited with status 7"
    assert history(client, failed["id"]) == ["pending", "building", "failed", "rolled_back"]
    assert {r["version"] for r in client.replicas("web")} == {"v1.0.0"}


@one_store
def test_cli_deploy_follows_rollback_replicas_and_logs(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    import subprocess
    import sys

    client: Client = stack["client"]
    client.setup_service(replicas=2, versions=("v1.0.0", "v2.0.0", "v3.0.0-broken"))
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

    first = cli("deploy", "web", "--version", "v1.0.0")
    assert first.returncode == 0, first.stderr
    assert "succeeded (2 replicas)" in first.stdout and "replica" in first.stdout
    assert "rolling web to v1.0.0" in first.stdout

    same = cli("deploy", "web", "--version", "v1.0.0")
    assert same.returncode == 0 and "nothing to do" in same.stdout

    broken = cli("deploy", "web", "--version", "v3.0.0-broken")
    assert broken.returncode == 1
    lines = [line for line in broken.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "failed" in lines[0] and "ended success" in lines[0], broken.stderr
    assert "automatic rollback" in broken.stdout

    table = cli("replicas", "web")
    assert table.returncode == 0 and table.stdout.count("v1.0.0") == 2 and "running" in table.stdout

    assert cli("deploy", "web", "--version", "v2.0.0").returncode == 0
    back = cli("rollback", "web")
    assert back.returncode == 0, back.stderr
    assert "to v1.0.0" in back.stdout and "succeeded" in back.stdout
    assert {r["version"] for r in client.replicas("web")} == {"v1.0.0"}
    v2 = next(
        d
        for d in client.ok("GET", "/deployments", params={"service": "web"})["items"]
        if d["version"] == "v2.0.0"
    )
    assert v2["status"] == "rolled_back"

    followed = cli("logs", v2["id"], "--follow")
    assert followed.returncode == 0 and f"deployment {v2['id']} rolled_back" in followed.stdout
    assert "rolling web to v2.0.0" in followed.stdout
    none = cli("rollback", "web", "--to", "v1.0.0")
    assert none.returncode == 0 and "nothing to do" in none.stdout


@one_store
def test_scale_up_and_down_through_the_engine(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    client.setup_service(replicas=2)
    assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"
    before = {r["id"] for r in client.replicas("web")}
    up = client.ok("POST", "/services/web/scale", json={"target_replicas": 4})
    assert up["target_replicas"] == 4 and up["deployment_id"]
    dep = client.wait(up["deployment_id"])
    assert dep["status"] == "success" and dep["event_type"] == "scale"
    after = client.replicas("web")
    assert len(after) == 4 and before <= {r["id"] for r in after}, "scaling up keeps the replicas"
    down = client.ok("POST", "/services/web/scale", json={"target_replicas": 1})
    assert client.wait(down["deployment_id"])["status"] == "success"
    deadline = time.monotonic() + 15
    while len(client.replicas("web")) != 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    artifacts = {
        a["version"]: a["deployed"]
        for a in client.ok("GET", "/artifacts", params={"service": "web"})
    }
    assert artifacts["v1.0.0"] is True


@one_store
def test_crash_on_start_and_failed_verification_are_rolled_back(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    client.setup_service(
        replicas=2,
        versions=("v1.0.0", "v2.0.0-crash", "v3.0.0-fading"),
        timeout=10,
        driver_config={"verify": {"checks": 4, "required": 4, "window": 2.0}},
    )
    assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"
    v1 = {r["pid"] for r in client.replicas("web")}

    started = time.monotonic()
    crash = client.wait(client.deploy("web", "v2.0.0-crash")["id"], {"rolled_back"})
    assert "process exited" in crash["error_message"]
    assert time.monotonic() - started < 8, "a replica that exits is not waited on for the timeout"
    assert {r["pid"] for r in client.replicas("web")} == v1, "the old replicas kept serving"

    fading = client.wait(client.deploy("web", "v3.0.0-fading")["id"], {"rolled_back"})
    assert "post-deploy verification failed" in fading["error_message"]
    logs = client.ok("GET", f"/deployments/{fading['id']}/logs")["items"]
    assert any(line["source"] == "verification" for line in logs)
    # Verification runs after the switch, so v1 was restored by the rollback (new processes).
    restored = client.replicas("web")
    assert len(restored) == 2 and {r["version"] for r in restored} == {"v1.0.0"}


@one_store
def test_command_driver_scale_and_status_commands(stack: dict[str, Any], child_tmp: Path) -> None:
    client: Client = stack["client"]
    record = child_tmp / "calls.txt"
    healthy = child_tmp / "healthy"
    healthy.touch()
    client.setup_service(
        "paas",
        replicas=1,
        driver="command",
        command=None,
        env_name="paas-env",
        driver_config={
            "deploy_command": f'echo "deploy $PILOTHOUSE_VERSION" >> {record}',
            "scale_command": f'echo "scale $PILOTHOUSE_REPLICAS $PILOTHOUSE_EVENT" >> {record}',
            "status_command": f"test -e {healthy}",
        },
    )
    assert client.wait(client.deploy("paas", "v1.0.0")["id"])["status"] == "success"
    scaled = client.ok("POST", "/services/paas/scale", json={"target_replicas": 3})
    assert client.wait(scaled["deployment_id"])["status"] == "success"
    assert record.read_text().splitlines() == ["deploy v1.0.0", "scale 3 scale"]
    healthy.unlink()  # the platform now reports unhealthy after a deploy
    failed = client.wait(client.deploy("paas", "v2.0.0")["id"], {"rolled_back", "failed"})
    assert failed["error_message"] == "status command exited with status 1"


@one_store
def test_deleting_a_service_stops_its_replicas_and_route(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    port = free_port()
    client.setup_service(
        replicas=2, router_port=port, driver_config={"env": {"SAMPLE_READY_DELAY": "1"}}
    )
    slow = client.deploy("web", "v1.0.0")  # each replica needs 1 s: still active below
    refused = client.http.delete("/services/web")
    assert refused.status_code == 409 and "active deployment" in refused.json()["message"]
    assert client.wait(slow["id"])["status"] == "success"
    pids = [r["pid"] for r in client.replicas("web")]
    assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    client.ok("DELETE", "/services/web", 204)
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "replicas of a deleted service must stop"
        time.sleep(0.2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
