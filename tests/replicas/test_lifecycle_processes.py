"""Replica lifecycle with real processes (issue 13 items 4 and 5): a live replica that fails its
health checks is restarted, then given up (service degraded or failed, an alert sent); a replica
over its memory limit is restarted with the reason recorded; `replicas` says how limits are
enforced. Runs `pilothouse serve` (API and worker) as a subprocess, like the engine tests."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pilothouse.drivers.cgroups import detect
from tests.conftest import one_store
from tests.engine_support import CHILD_PYTHON, SHA, Client, alive

#: A replica app whose health and memory the test steers: /health answers 503 from its second
#: second on while a file named after the replica's log (its replica id) exists in SICK_DIR, so a
#: restarted replica (same log) passes its readiness gate, then turns sick again, and the other
#: replicas stay well; HOG_MB megabytes are allocated and touched at start.
APP = r"""
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
started = time.monotonic()
hog = bytearray(b"x") * (int(os.environ.get("HOG_MB", "0")) * 1024 * 1024)
log = os.path.basename(os.readlink("/proc/self/fd/1"))
sick = os.path.join(os.environ.get("SICK_DIR", "/nonexistent"), log)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if time.monotonic() - started > 1 and os.path.exists(sick) else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever(poll_interval=0.1)
"""


def _app() -> tuple[str, Path]:
    """The app file and a sick-flag folder, both usable by the unprivileged run-as user."""
    folder = Path(tempfile.mkdtemp(prefix="pilothouse-lifecycle-"))
    atexit.register(shutil.rmtree, folder, True)
    folder.chmod(0o755)
    (folder / "app.py").write_text(APP)
    (folder / "app.py").chmod(0o644)
    sick = folder / "sick"
    sick.mkdir()
    sick.chmod(0o755)
    return f"{CHILD_PYTHON} {folder / 'app.py'} {{port}}", sick


class Receiver:
    """A webhook channel's endpoint: keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(json.loads(body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _service(
    client: Client, command: str, *, replicas: int, driver_config: dict[str, Any], memory: int = 512
) -> None:
    client.ok("POST", "/environments", 201, json={"name": "dev", "driver": "process"})
    svc = client.ok(
        "POST",
        "/services",
        201,
        json={
            "environment": "dev",
            "name": "web",
            "command": command,
            "target_replicas": replicas,
            "resources": {"memory_mb": memory},
            "driver_config": driver_config,
            "health_check": {
                "path": "/health",
                "timeout": 3,
                "interval": 0.05,
                "replica_interval": 0.2,
                "request_timeout": 1,
            },
        },
    )
    client.ok(
        "POST", "/artifacts", 201, json={"service": svc["id"], "version": "v1", "commit_sha": SHA}
    )
    assert client.wait(client.deploy("web", "v1")["id"])["status"] == "success"


def _until(what: str, check: Any, timeout: float = 60) -> Any:
    """Poll `check` until it returns something truthy (a bounded wait, nothing timed)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)


def _reasons(client: Client, kind: str, entity: str) -> list[tuple[str, str | None]]:
    return [(h["to_status"], h["reason"]) for h in client.ok("GET", f"/history/{kind}/{entity}")]


@one_store
def test_a_replica_failing_its_health_checks_is_restarted_then_given_up(
    stack: dict[str, Any],
) -> None:
    client: Client = stack["client"]
    receiver = Receiver()
    try:
        client.ok(
            "POST",
            "/channels",
            201,
            json={"name": "hook", "kind": "webhook", "config": {"url": receiver.url}},
        )
        command, sick = _app()
        _service(
            client,
            command,
            replicas=2,
            driver_config={
                "env": {"SICK_DIR": str(sick)},
                "liveness_failures": 3,
                "max_restarts": 2,
                "restart_window": 600,
            },
        )
        victim, healthy = client.replicas("web")
        first_pid = victim["pid"]
        (sick / f"{victim['id']}.log").touch()

        def given_up() -> dict[str, Any] | None:
            row = {r["id"]: r for r in client.replicas("web", None)}[victim["id"]]
            return row if (row["restart_reason"] or "").startswith("gave up") else None

        row = _until("the sick replica is given up", given_up)
        assert row["status"] == "failed" and row["restart_count"] == 2
        assert row["restart_reason"] == (
            "gave up after 2 restarts in 600 s; last: liveness: 3 failed checks: HTTP 503"
        )
        reasons = _reasons(client, "replica", victim["id"])
        assert ("failed", "liveness: 3 failed checks: HTTP 503") in reasons
        assert ("running", "restarted after liveness: 3 failed checks: HTTP 503") in reasons
        assert [to for to, _ in reasons].count("starting") == 3  # the start and two restarts
        _until("its last process is stopped", lambda: not alive(row["pid"]), 30)
        assert not alive(first_pid)
        # The other replica was never touched: the service is degraded, not failed.
        still = {r["id"]: r for r in client.replicas("web", None)}[healthy["id"]]
        assert still["status"] == "running" and still["pid"] == healthy["pid"]
        assert still["restart_count"] == 0
        assert client.ok("GET", "/services/web")["status"] == "running"
        alert = _until(
            "the alert",
            lambda: [b for b in receiver.bodies if b.get("event") == "service_degraded"],
        )[0]
        assert alert["status"] == "degraded" and alert["replica"] == victim["id"]
        assert "1 replica(s) still running" in alert["text"]

        # The other replica fails too: none left, the service is failed.
        (sick / f"{healthy['id']}.log").touch()
        _until(
            "the service fails",
            lambda: client.ok("GET", "/services/web")["status"] == "failed",
        )
        history = _reasons(client, "service", client.ok("GET", "/services/web")["id"])
        assert history[-1][0] == "failed" and "no replica left running" in (history[-1][1] or "")
        failed = _until(
            "the failed alert", lambda: [b for b in receiver.bodies if b.get("status") == "failed"]
        )[0]
        assert failed["event"] == "service_failed" and "no replica left running" in failed["text"]
    finally:
        receiver.close()


def _cli(stack: dict[str, Any], tmp_path: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PILOTHOUSE_URL": stack["server"].url,
        "PILOTHOUSE_TOKEN": stack["token"],
        "PILOTHOUSE_CLI_CONFIG": str(tmp_path / "none.json"),
        "COLUMNS": "250",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pilothouse", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


@one_store
def test_a_replica_over_its_memory_limit_is_restarted_with_the_reason(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    client: Client = stack["client"]
    command, _ = _app()
    _service(
        client,
        command,
        replicas=1,
        memory=512,
        driver_config={"env": {"HOG_MB": "640"}, "memory_grace_seconds": 1, "max_restarts": 1},
    )
    (replica,) = client.replicas("web")
    expected = "cgroup" if detect().root is not None else "sampling"
    assert replica["enforcement"] == expected

    def given_up() -> dict[str, Any] | None:
        row = client.replicas("web", None)[0]
        return row if (row["restart_reason"] or "").startswith("gave up") else None

    row = _until("the replica over its limit is given up", given_up)
    reasons = _reasons(client, "replica", replica["id"])
    memory = [r for to, r in reasons if to == "failed" and r and r.startswith("memory: ")]
    assert memory, reasons
    if expected == "sampling":
        assert " MB over the 512 MB limit for " in memory[0]
    assert row["restart_count"] == 1 and row["status"] == "failed"
    _until("its process is stopped", lambda: not alive(row["pid"]), 30)
    assert client.ok("GET", "/services/web")["status"] == "failed"
    table = _cli(stack, tmp_path, "replicas", "web", "--env", "dev")
    assert "limits" in table and expected in table and "gave up after 1 restarts" in table
