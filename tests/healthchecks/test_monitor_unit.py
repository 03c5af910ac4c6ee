"""The monitor against real local servers without the rest of pilothouse: a flapping target never
publishes unhealthy; an open incident sends reminders; an https URL gets a TLS target."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse.access import Principal
from pilothouse.alerts.models import NotificationChannel
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.healthchecks.models import HealthCheck, HealthState, Incident
from pilothouse.healthchecks.monitor import Monitor, MonitorSettings
from pilothouse.services import service as services


class Flapping(BaseHTTPRequestHandler):
    counter = itertools.count()

    def do_GET(self) -> None:
        status = 200 if next(self.counter) % 2 == 0 else 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Collector(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        Collector.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Any]:
    def start(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        return srv

    started: list[ThreadingHTTPServer] = []
    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


async def _setup(db: Database, admin: Principal, url: str) -> uuid.UUID:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e")
        svc = await services.create_service(
            session,
            admin,
            environment="e",
            name="s",
            resources={},
            public_url=url,
            health_check={"interval": 0.2},
        )
        svc.status = "running"
        return svc.id


async def test_flapping_target_never_publishes_unhealthy(
    db: Database, admin: Principal, server: Any
) -> None:
    srv = server(Flapping)
    service_id = await _setup(db, admin, f"http://127.0.0.1:{srv.server_address[1]}/")
    monitor = Monitor(db, MonitorSettings(tick=0.05, flush=0.1))
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        await monitor.tick(time.time())
        await asyncio.sleep(0.05)
    await asyncio.gather(*monitor.tasks)
    await monitor.flush()
    async with db.session(write=False) as session:
        checks = await session.scalar(
            sa.select(sa.func.count()).select_from(HealthCheck).where(HealthCheck.kind == "http")
        )
        state = await session.get(HealthState, f"service:{service_id}")
        assert state is not None
    assert int(checks or 0) >= 10, "the target was probed every slot"
    assert state.status == "healthy", "alternating results never reach 3 failures in a row"


async def test_open_incident_sends_reminders(db: Database, admin: Principal, server: Any) -> None:
    Collector.received = []
    hook = server(Collector)
    service_id = await _setup(db, admin, "http://127.0.0.1:9/")
    async with db.session() as session:
        session.add(
            NotificationChannel(
                owner_id=admin.id,
                name="hook",
                kind="webhook",
                config={"url": f"http://127.0.0.1:{hook.server_address[1]}/"},
            )
        )
        session.add(
            Incident(
                service_id=service_id,
                status="unhealthy",
                cause="redis disconnected",
                started_at=utcnow() - timedelta(minutes=3),
                notified_at=utcnow() - timedelta(minutes=3),
            )
        )
    monitor = Monitor(db, MonitorSettings(reminder_minutes=1))
    await monitor.remind()  # 3 minutes open, reminders every minute: one message now
    await monitor.remind()  # the next one is due at 4 minutes, not yet
    async with db.session(write=False) as session:
        incident = await session.scalar(sa.select(Incident))
        assert incident is not None
    assert incident.reminders == 3  # counted up to the intervals elapsed, missed ones skipped
    assert [m["event"] for m in Collector.received] == ["reminder"]
    assert "redis disconnected" in Collector.received[0]["text"]


async def test_monitor_adds_a_tls_target_for_https_public_urls(
    db: Database, admin: Principal
) -> None:
    """An https public URL gets an HTTP(S) target and a TLS handshake target."""
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e")
        svc = await services.create_service(
            session,
            admin,
            environment="e",
            name="s",
            resources={},
            public_url="https://example.org:8443/health",
        )
        svc.status = "running"
    targets = await Monitor(db).collect_targets()
    assert sorted((t.kind, t.key.split(":")[0]) for t in targets) == [
        ("http", "url"),
        ("tls", "tls"),
    ]


class Unavailable(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_a_target_answering_503_is_unhealthy_http_503(
    db: Database, admin: Principal, server: Any
) -> None:
    """Issue 13.12: it answered, so the cause is "HTTP 503", never "not responding"."""
    srv = server(Unavailable)
    service_id = await _setup(db, admin, f"http://127.0.0.1:{srv.server_address[1]}/")
    monitor = Monitor(db, MonitorSettings(tick=0.05, flush=0.1))
    incident = None
    deadline = time.monotonic() + 20
    while incident is None and time.monotonic() < deadline:
        for _ in range(10):
            await monitor.tick(time.time())
            await asyncio.sleep(0.05)
        await asyncio.gather(*monitor.tasks)
        await monitor.flush()
        async with db.session(write=False) as session:
            incident = await session.scalar(
                sa.select(Incident).where(Incident.service_id == service_id)
            )
            check = await session.scalar(sa.select(HealthCheck).where(HealthCheck.kind == "http"))
    assert incident is not None, "three 503s in a row open an incident"
    assert incident.status == "unhealthy" and incident.cause == "HTTP 503"
    assert check is not None and check.http_status == 503
