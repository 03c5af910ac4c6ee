"""The monitor against real local servers without the rest of pilothouse: a flapping target never
publishes unhealthy; an open incident sends reminders."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
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
from pilothouse.users import service as users


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


async def _setup(db: Database, url: str) -> Any:
    async with db.session() as session:
        user, _ = await users.bootstrap_admin(session, "a")
        admin = Principal(user.id, "a", "admin")
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
        return svc.id, user.id


def test_flapping_target_never_publishes_unhealthy(db_url: str, server: Any) -> None:
    srv = server(Flapping)

    async def scenario() -> tuple[int, str]:
        db = Database(db_url)
        try:
            service_id, _ = await _setup(db, f"http://127.0.0.1:{srv.server_address[1]}/")
            monitor = Monitor(db, MonitorSettings(tick=0.05, flush=0.1))
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                await monitor.tick(time.time())
                await asyncio.sleep(0.05)
            await asyncio.gather(*monitor.tasks)
            await monitor.flush()
            async with db.session(write=False) as session:
                checks = await session.scalar(
                    sa.select(sa.func.count())
                    .select_from(HealthCheck)
                    .where(HealthCheck.kind == "http")
                )
                state = await session.get(HealthState, f"service:{service_id}")
                assert state is not None
                return int(checks or 0), state.status
        finally:
            await db.dispose()

    checks, status = asyncio.run(scenario())
    assert checks >= 10, "the target was probed every slot"
    assert status == "healthy", "alternating results never reach 3 failures in a row"


def test_open_incident_sends_reminders(db_url: str, server: Any) -> None:
    Collector.received = []
    hook = server(Collector)

    async def scenario() -> int:
        db = Database(db_url)
        try:
            service_id, owner = await _setup(db, "http://127.0.0.1:9/")
            async with db.session() as session:
                session.add(
                    NotificationChannel(
                        owner_id=owner,
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
                return incident.reminders
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == 3  # counted up to the intervals elapsed, missed ones skipped
    assert [m["event"] for m in Collector.received] == ["reminder"]
    assert "redis disconnected" in Collector.received[0]["text"]
