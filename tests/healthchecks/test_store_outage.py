"""The monitor while the store is away (issue 12.4): it keeps probing, alerts from memory for a
down dependency, buffers its results (bounded) and writes them back with their real timestamps,
so the outage shows in uptime and opens an incident, with one alert, not two.

The dependency is the environment's declared database: a throwaway PostgreSQL cluster that the
test stops. On the postgres store it is the store itself (as in the issue); on the sqlite store
the store's file goes away at the same time. The monitor's clock is moved by the test (5 s a
step), the probes are real."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse import migrations
from pilothouse.access import SYSTEM, Principal
from pilothouse.alerts.models import NotificationChannel
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.logging import configure
from pilothouse.environments import service as environments
from pilothouse.healthchecks import monitor as monitor_module
from pilothouse.healthchecks import service as health
from pilothouse.healthchecks.models import HealthCheck, Incident
from pilothouse.healthchecks.monitor import Monitor, MonitorSettings
from pilothouse.services import service as services
from pilothouse.users import service as users
from tests.pg_cluster import Cluster, throwaway_cluster


@pytest.fixture(autouse=True)
def _logs_to_stderr_afterwards() -> Iterator[None]:
    """Tests here read the log through capsys, whose stream is closed after the test: point
    the logger back at the real stderr (autouse: torn down after capsys)."""
    yield
    configure("info")


class Answering(BaseHTTPRequestHandler):
    """The service itself: it answers 200 all along (its database is what goes away)."""

    def do_GET(self) -> None:
        self.send_response(200)
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
def http_servers() -> Iterator[tuple[str, str]]:
    Collector.received = []
    started = [ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (Answering, Collector)]
    for srv in started:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    app, hook = (f"http://127.0.0.1:{srv.server_address[1]}/" for srv in started)
    yield app, hook
    for srv in started:
        srv.shutdown()
        srv.server_close()


class Outage:
    """Stops the dependency (and, for a SQLite store, hides the store's file) and restores it."""

    def __init__(self, kind: str, cluster: Cluster, home: Path) -> None:
        self.kind, self.cluster, self.home = kind, cluster, home
        self.url = cluster.url() if kind == "postgres" else f"sqlite:///{home / 'store.db'}"

    async def begin(self, db: Database) -> None:
        await asyncio.to_thread(self.cluster.stop)
        if self.kind == "sqlite":
            self.home.rename(self.home.with_name("away"))
            await db.dispose()

    async def end(self) -> None:
        if self.kind == "sqlite":
            self.home.with_name("away").rename(self.home)
        await asyncio.to_thread(self.cluster.start)


@pytest.fixture(params=["postgres", "sqlite"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    home = tmp_path / "store"
    home.mkdir()
    with throwaway_cluster() as cluster:
        yield Outage(request.param, cluster, home)


class Clock:
    """The monitor's utcnow, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def _setup(db: Database, app_url: str, hook_url: str, dependency: str) -> uuid.UUID:
    async with db.session() as session:
        user, _ = await users.bootstrap_admin(session, "a")
        admin = Principal(user.id, "a", "admin")
        await environments.create_environment(
            session,
            admin,
            name="e",
            config={"database_url": dependency, "dependency_interval": 5},
        )
        svc = await services.create_service(
            session,
            admin,
            environment="e",
            name="s",
            resources={},
            public_url=app_url,
            health_check={
                "interval": 5,
                "thresholds": {"failures_to_unhealthy": 2, "successes_to_healthy": 2},
            },
        )
        svc.status = "running"
        session.add(
            NotificationChannel(
                owner_id=user.id, name="hook", kind="webhook", config={"url": hook_url}
            )
        )
        return svc.id


async def _step(monitor: Monitor, clock: Clock, seconds: float = 5) -> None:
    """One step of the monitor's life: time passes, due probes run, results are flushed."""
    clock.now += timedelta(seconds=seconds)
    await monitor.tick(clock.now.timestamp())
    await asyncio.gather(*monitor.tasks)
    await monitor.flush()


def test_outage_is_probed_alerted_buffered_and_written_back(
    outage: Outage,
    http_servers: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app_url, hook_url = http_servers
    migrations.upgrade(outage.url)
    configure("info")
    # Twelve minutes ago, so that every timestamp the monitor writes is in the past.
    clock = Clock(utcnow() - timedelta(minutes=12))
    monkeypatch.setattr(monitor_module, "utcnow", clock)

    async def scenario() -> dict[str, Any]:
        db = Database(outage.url)
        try:
            service_id = await _setup(db, app_url, hook_url, outage.cluster.url())
            monitor = Monitor(db, MonitorSettings(refresh=5, flush=0, store_retry=0))
            for _ in range(8):
                await _step(monitor, clock)
            assert not Collector.received, "healthy so far"

            await outage.begin(db)
            began = clock.now
            for _ in range(40):  # 200 s without a store
                await _step(monitor, clock)
            ended = clock.now
            alerts_while_down = [m["event"] for m in Collector.received]
            buffered = monitor.buffered

            await outage.end()
            for _ in range(6):
                await _step(monitor, clock)

            async with db.session(write=False) as session:
                dep_rows = list(
                    await session.scalars(
                        sa.select(HealthCheck)
                        .where(HealthCheck.kind == "postgres")
                        .order_by(HealthCheck.timestamp)
                    )
                )
                service_rows = list(
                    await session.scalars(
                        sa.select(HealthCheck).where(
                            HealthCheck.target == f"service:{service_id}",
                            HealthCheck.timestamp > began,
                            HealthCheck.timestamp <= ended,
                        )
                    )
                )
                incidents = list(await session.scalars(sa.select(Incident)))
                report, _, _ = await health.uptime_of(
                    session, SYSTEM, str(service_id), utcnow().strftime("%Y-%m")
                )
            return {
                "began": began,
                "ended": ended,
                "alerts_while_down": alerts_while_down,
                "buffered": buffered,
                "dep_rows": dep_rows,
                "service_rows": service_rows,
                "incidents": incidents,
                "report": report,
            }
        finally:
            await db.dispose()

    seen = asyncio.run(scenario())
    log = capsys.readouterr().err
    began, ended = seen["began"], seen["ended"]

    # The dependency kept being probed, and its failures were alerted while the store was away.
    assert seen["alerts_while_down"] == ["incident"], seen["alerts_while_down"]
    assert "database disconnected" in Collector.received[0]["text"]
    assert seen["buffered"] > 0

    # Written back with the times they were taken.
    failing = [r for r in seen["dep_rows"] if began < r.timestamp <= ended]
    assert len(failing) >= 35 and not any(r.ok for r in failing)
    assert {r.database_status for r in failing} == {"disconnected"}
    assert len(seen["service_rows"]) >= 35
    assert {r.overall_status for r in seen["service_rows"]} == {"unhealthy"}

    # One incident, opened inside the outage, closed after it; one alert and one recovery.
    opened = [(i.cause, i.started_at, i.ended_at) for i in seen["incidents"]]
    assert len(opened) == 1, opened
    [incident] = seen["incidents"]
    assert began < incident.started_at <= began + timedelta(seconds=30)
    assert incident.ended_at is not None and incident.ended_at > ended
    assert "database disconnected" in incident.cause
    assert [m["event"] for m in Collector.received] == ["incident", "recovery"]

    # Uptime counts the outage.
    report = seen["report"]
    assert report.downtime_minutes >= 2
    assert any(start < ended and end > began for start, end in report.outages)
    assert report.uptime_percent < 100

    assert "Traceback" not in log
    events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
    assert events.count("store unreachable") == 1, log
    assert events.count("store reachable again") == 1, log


def test_buffer_is_bounded(
    outage: Outage,
    http_servers: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app_url, hook_url = http_servers
    migrations.upgrade(outage.url)
    configure("info")
    clock = Clock(utcnow() - timedelta(minutes=12))
    monkeypatch.setattr(monitor_module, "utcnow", clock)

    async def scenario() -> tuple[list[int], int, int]:
        db = Database(outage.url)
        try:
            await _setup(db, app_url, hook_url, outage.cluster.url())
            monitor = Monitor(db, MonitorSettings(refresh=5, flush=0, buffer=12, store_retry=0))
            for _ in range(4):
                await _step(monitor, clock)
            await outage.begin(db)
            sizes = []
            for _ in range(20):
                await _step(monitor, clock)
                sizes.append(monitor.buffered)
            dropped = monitor.dropped
            await outage.end()
            await _step(monitor, clock)
            async with db.session(write=False) as session:
                stored = await session.scalar(sa.select(sa.func.count()).select_from(HealthCheck))
            return sizes, dropped, int(stored or 0)
        finally:
            await db.dispose()

    sizes, dropped, stored = asyncio.run(scenario())
    log = capsys.readouterr().err
    assert max(sizes) <= 12
    assert dropped > 0
    assert stored > 0
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert sum(1 for e in events if e["event"] == "health results dropped") == 1, log


@pytest.mark.parametrize(
    ("kind", "ok", "status", "http", "expected"),
    [
        ("service", True, "healthy", 200, "up"),
        ("service", True, "degraded", 200, "up"),
        # Answering while unhealthy (its declared database disconnected) is not being up.
        ("service", True, "unhealthy", 200, "error"),
        ("service", False, "unhealthy", 503, "error"),
        ("service", False, "unhealthy", None, "down"),
        ("http", True, "healthy", 200, "up"),
        ("http", False, "unhealthy", 500, "error"),
        ("http", False, "unhealthy", None, "down"),
    ],
)
def test_outcome_for_uptime(
    kind: str, ok: bool, status: str, http: int | None, expected: str
) -> None:
    check = HealthCheck(kind=kind, ok=ok, overall_status=status, http_status=http)
    assert health.outcome(check) == expected


def test_while_the_store_is_away_it_is_tried_once_per_store_retry(
    tmp_path: Path, http_servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network cut costs a connect timeout per attempt: the monitor keeps probing without
    touching the store in between (SQLite store, its file moved away)."""
    app_url, hook_url = http_servers
    home = tmp_path / "store"
    home.mkdir()
    url = f"sqlite:///{home / 'store.db'}"
    migrations.upgrade(url)
    clock = Clock(utcnow() - timedelta(minutes=12))
    monkeypatch.setattr(monitor_module, "utcnow", clock)

    async def scenario() -> tuple[int, int]:
        db = Database(url)
        try:
            await _setup(db, app_url, hook_url, "postgresql://postgres@127.0.0.1:9/none")
            monitor = Monitor(db, MonitorSettings(refresh=5, flush=0, store_retry=3600))
            for _ in range(4):
                await _step(monitor, clock)
            home.rename(tmp_path / "away")
            await db.dispose()
            attempts = 0
            real_session = db.session

            def counting(*args: Any, **kwargs: Any) -> Any:
                nonlocal attempts
                attempts += 1
                return real_session(*args, **kwargs)

            monkeypatch.setattr(db, "session", counting)
            for _ in range(10):
                await _step(monitor, clock)
            return attempts, monitor.buffered
        finally:
            await db.dispose()

    attempts, buffered = asyncio.run(scenario())
    assert attempts == 1, "one failed attempt, then none until store_retry has passed"
    assert buffered >= 10 * 2, "the probes went on and their results were kept"
