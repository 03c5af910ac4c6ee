"""The TLS probe feeds health: a service answering over https with a certificate that expires
in 6 days is degraded with that reason, never unhealthy, and no downtime is recorded (an
expiring certificate is a warning, not downtime)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
import trustme

from pilothouse.access import Principal
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.healthchecks.models import HealthCheck, HealthState, Incident
from pilothouse.healthchecks.monitor import Monitor, MonitorSettings
from pilothouse.healthchecks.service import record_downtime
from pilothouse.services import service as services
from tests.certificates.support import ca_file, leaf, server_context
from tests.conftest import one_store


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https() -> Iterator[tuple[int, trustme.CA]]:
    ca = trustme.CA()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    srv.socket = server_context(leaf(ca, "127.0.0.1", days=6.5)).wrap_socket(
        srv.socket, server_side=True
    )
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv.server_address[1], ca
    srv.shutdown()
    srv.server_close()


@one_store
async def test_expiring_certificate_is_a_warning_not_downtime(
    db: Database, admin: Principal, https: tuple[int, trustme.CA], tmp_path: Path
) -> None:
    port, ca = https
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e")
        svc = await services.create_service(
            session,
            admin,
            environment="e",
            name="s",
            resources={},
            public_url=f"https://127.0.0.1:{port}/",
            health_check={"interval": 0.2},
        )
        svc.status = "running"
        service_id = svc.id
    settings = MonitorSettings(tick=0.05, flush=0.1, tls_ca_file=ca_file(ca, tmp_path))
    monitor = Monitor(db, settings)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        await monitor.tick(time.time())
        await asyncio.sleep(0.05)
    await asyncio.gather(*monitor.tasks)
    await monitor.flush()
    async with db.session(write=False) as session:
        state = await session.get(HealthState, f"service:{service_id}")
        detail = await session.scalar(
            sa.select(HealthCheck.detail)
            .where(HealthCheck.kind == "service", HealthCheck.service_id == service_id)
            .order_by(HealthCheck.timestamp.desc())
            .limit(1)
        )
        incidents = [i.status for i in await session.scalars(sa.select(Incident))]
    assert state is not None and state.status == "degraded"
    assert detail == "certificate expires in 6 days"
    # A degraded incident may open (every degraded service gets one), never an unhealthy one,
    # and the service-level checks hold no downtime.
    assert set(incidents) <= {"degraded"}
    assert await record_downtime(db, utcnow()) == 0
