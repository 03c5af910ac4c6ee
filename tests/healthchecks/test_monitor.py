"""Health monitoring end to end: a deployed service is probed; a dependency outage gives exactly
one alert and one recovery message, delivered to a real webhook receiver and a real SMTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port, one_store
from tests.engine_support import Client

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("redis-server") is None,
    reason="needs nginx and redis-server",
)
SECRET = "webhook-secret-for-tests"


class Receiver:
    """A webhook receiver that records every delivered message and checks its signature."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.bad_signatures = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if self.headers.get("X-Pilothouse-Signature") != expected:
                    outer.bad_signatures += 1
                outer.messages.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode(errors="replace"))
        return "250 OK"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    args = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    state: dict[str, Any] = {"port": port}

    def start() -> None:
        state["proc"] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def stop() -> None:
        state["proc"].terminate()
        state["proc"].wait(10)

    state["start"], state["stop"] = start, stop
    start()
    yield state
    if state["proc"].poll() is None:
        stop()


def wait_for(
    predicate: Any, timeout: float = 30, what: str = "condition", show: Any = None
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            seen = show() if show else None
            raise AssertionError(f"timed out waiting for {what}; last seen: {seen}")
        time.sleep(0.2)


@one_store
def test_dependency_outage_gives_one_alert_and_one_recovery(
    stack: dict[str, Any], redis: dict[str, Any]
) -> None:
    client: Client = stack["client"]
    receiver = Receiver()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        client.ok(
            "POST",
            "/environments",
            201,
            json={
                "name": "dev",
                "config": {
                    "redis_url": f"redis://127.0.0.1:{redis['port']}/0",
                    "dependency_interval": 1,
                },
            },
        )
        client.setup_service(replicas=2, env_name="dev")
        client.ok(
            "PATCH",
            "/services/web",
            json={
                "health_check": {
                    "path": "/health",
                    "timeout": 10,
                    "replica_interval": 1,
                    "public_badge": True,
                    "thresholds": {"failures_to_unhealthy": 2, "successes_to_healthy": 2},
                }
            },
        )
        client.ok(
            "POST",
            "/channels",
            201,
            json={
                "name": "hook",
                "kind": "webhook",
                "config": {"url": receiver.url, "secret": SECRET},
            },
        )
        client.ok(
            "POST",
            "/channels",
            201,
            json={
                "name": "mail",
                "kind": "email",
                "config": {"host": "127.0.0.1", "port": smtp.port, "to": ["oncall@example.org"]},
            },
        )
        assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"

        health = lambda: client.ok("GET", "/services/web/health")  # noqa: E731
        wait_for(
            lambda: (
                health()["status"] == "healthy"
                and any(c["target"].startswith("dep:") for c in health()["checks"])
            ),
            what="healthy",
            show=health,
        )
        listed = client.ok("GET", "/channels")
        assert SECRET not in json.dumps(listed) and listed[0]["config"]["secret"] == "***"

        redis["stop"]()
        wait_for(lambda: health()["status"] == "unhealthy", what="unhealthy")
        assert "redis disconnected" in health()["reasons"][0]
        wait_for(lambda: len(receiver.messages) >= 1, what="alert")
        time.sleep(4)  # several more failing rounds: still a single alert
        assert [m["event"] for m in receiver.messages] == ["incident"]

        redis["start"]()
        wait_for(lambda: health()["status"] == "healthy", what="recovery")
        wait_for(lambda: len(receiver.messages) >= 2, what="recovery message")
        time.sleep(2)
        assert [m["event"] for m in receiver.messages] == ["incident", "recovery"]
        assert receiver.bad_signatures == 0
        wait_for(lambda: len(mailbox.messages) >= 2, what="two emails")
        assert len(mailbox.messages) == 2
        assert "unhealthy" in mailbox.messages[0] and "recovered" in mailbox.messages[1]

        incidents = client.ok("GET", "/incidents", params={"service": "web"})
        assert len(incidents) == 1 and incidents[0]["ended_at"] is not None
        svc = client.ok("GET", "/services/web")
        changes = [
            (h["from_status"], h["to_status"])
            for h in client.ok("GET", f"/history/service/{svc['id']}")
        ]
        assert changes  # lifecycle rows exist; health rows are under service_health
        report = client.ok("GET", "/services/web/uptime")
        assert report["checks"] > 0 and 0 <= report["uptime_percent"] <= 100
        assert report["deployments"] and report["deployments"][0]["version"] == "v1.0.0"

        import httpx

        badge = httpx.get(f"{stack['server'].url}/badge/web/status.svg")
        assert badge.status_code == 200 and "healthy" in badge.text
        assert httpx.get(f"{stack['server'].url}/badge/nope/status.svg").status_code == 404

        env = {
            **os.environ,
            "PILOTHOUSE_URL": stack["server"].url,
            "PILOTHOUSE_TOKEN": stack["token"],
            "PILOTHOUSE_CLI_CONFIG": "/nonexistent",
            "COLUMNS": "200",
        }
        for args, expect in (
            (["health", "web"], "web: healthy"),
            (["uptime", "web"], "uptime"),
            (["incidents"], "redis disconnected"),
            (["channel", "list"], "***"),
        ):
            proc = subprocess.run(
                [sys.executable, "-m", "pilothouse", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 0 and expect in proc.stdout, (args, proc.stdout, proc.stderr)
            assert SECRET not in proc.stdout
    finally:
        smtp.stop()
        receiver.server.shutdown()
