"""The store goes away (issue 12.4): the API answers 503 with a reason and Retry-After, /readyz
follows the store, the log gets one line per change of state, nothing that answered 2xx is lost,
and a rollout cut by the outage names the store as its cause.

The store is a throwaway PostgreSQL cluster that the test stops and starts (tests/pg_cluster.py),
or a SQLite file whose directory is moved away (SQLite's own way of being unreachable)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import psutil
import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from pilothouse import migrations
from pilothouse.app import create_app
from pilothouse.config import Settings
from pilothouse.core.logging import configure
from pilothouse.core.store import unreachable
from pilothouse.setup import _bootstrap
from tests.conftest import LiveServer
from tests.engine_support import SAMPLE_APP, SAMPLE_COMMAND, SHA, TERMINAL, cleanup
from tests.pg_cluster import Cluster, throwaway_cluster


@pytest.fixture(autouse=True)
def _logs_to_stderr_afterwards() -> Iterator[None]:
    """Tests here read the log through capsys, whose stream is closed after the test: point
    the logger back at the real stderr (autouse: torn down after capsys)."""
    yield
    configure("info")


# -- which errors mean "the store is unreachable" (one place: core/store.py) --------------------


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError.instance(
        "SELECT 1", {}, orig, Exception, connection_invalidated=invalidated
    )


REFUSED = (
    'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
    "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"
)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_wrapped(psycopg.OperationalError(REFUSED)), "connection refused"),
        (
            _wrapped(psycopg.errors.AdminShutdown("terminating connection"), invalidated=True),
            "the server is shutting down",
        ),
        (
            _wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")),
            "the server is starting up",
        ),
        (
            _wrapped(psycopg.OperationalError("connection timeout expired")),
            "connection timed out",
        ),
        (
            _wrapped(psycopg.errors.TooManyConnections("sorry, too many clients already")),
            "too many connections",
        ),
        (
            _wrapped(psycopg.OperationalError("consuming input failed: server closed")),
            "connection lost",
        ),
        (
            _wrapped(psycopg.InterfaceError("the connection is closed"), invalidated=True),
            "connection lost",
        ),
        (
            _wrapped(sqlite3.OperationalError("unable to open database file")),
            "unable to open the database file",
        ),
        (_wrapped(ValueError("whatever"), invalidated=True), "connection lost"),
        # Not an outage: the request or the data is at fault, or the server refused one query.
        (_wrapped(sqlite3.OperationalError("no such table: users")), None),
        (_wrapped(psycopg.errors.QueryCanceled("canceling statement")), None),
        (_wrapped(psycopg.errors.DeadlockDetected("deadlock detected")), None),
        (_wrapped(psycopg.errors.InvalidPassword("password authentication failed")), None),
        (sa.exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("dup")), None),
        # A raw driver error did not come through the store's engine (a probe, a backup target).
        (psycopg.OperationalError(REFUSED), None),
        (ValueError("no"), None),
    ],
)
def test_unreachable_maps_driver_errors(error: BaseException, reason: str | None) -> None:
    assert unreachable(error) == reason


def test_unreachable_follows_the_cause_chain() -> None:
    try:
        try:
            raise _wrapped(psycopg.OperationalError(REFUSED))
        except sa.exc.DBAPIError as exc:
            raise RuntimeError("while loading the deployment") from exc
    except RuntimeError as outer:
        assert unreachable(outer) == "connection refused"


# -- the store under test ---------------------------------------------------------------------


class Store:
    """The store of one test: `go_away()` makes it unreachable, `come_back()` restores it."""

    def __init__(self, kind: str, tmp_path: Path, cluster: Cluster | None) -> None:
        self.kind = kind
        self.cluster = cluster
        self.home = tmp_path / "store"
        self.home.mkdir()
        if cluster is not None:
            self.url = cluster.url()
        else:
            self.url = f"sqlite:///{self.home / 'pilothouse.db'}"

    def go_away(self, dispose: Any = None) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            return
        # A SQLite store is unreachable when its file cannot be opened (a disk gone, a volume
        # unmounted): move the directory away and close the pooled connections.
        self.home.rename(self.home.with_name("store-away"))
        if dispose is not None:
            dispose()

    def come_back(self) -> None:
        if self.cluster is not None:
            self.cluster.start()
        else:
            self.home.with_name("store-away").rename(self.home)


@pytest.fixture(params=["postgres", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield Store("sqlite", tmp_path, None)
        return
    with throwaway_cluster() as cluster:
        yield Store("postgres", tmp_path, cluster)


def _events(log: str) -> list[dict[str, Any]]:
    found = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def _count(log: str, event: str) -> int:
    return sum(1 for e in _events(log) if e.get("event") == event)


def _token(url: str) -> str:
    migrations.upgrade(url)
    token = asyncio.run(_bootstrap(url, "admin"))
    assert token is not None
    return token


# -- the API ------------------------------------------------------------------------------------


def test_api_answers_503_with_retry_after_while_the_store_is_away(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _token(store.url)
    settings = Settings(data_dir=tmp_path / "data", database_url=store.url, role="api")
    app = create_app(settings, migrate=False)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/environments", headers=headers).status_code == 200
        assert client.get("/readyz").json()["store"] == "reachable"
        capsys.readouterr()

        store.go_away(lambda: client.portal.call(app.state.db.dispose))  # type: ignore[union-attr]
        answers = [client.get("/api/v1/environments", headers=headers) for _ in range(6)]
        answers += [
            client.post("/api/v1/environments", json={"name": f"e{i}"}, headers=headers)
            for i in range(4)
        ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["Retry-After"]) > 0
            body = answer.json()
            assert body["error"] == "store_unavailable"
            assert "store is unreachable" in body["message"]
            assert body["detail"]["reason"]
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and int(ready.headers["Retry-After"]) > 0
        assert ready.json()["error"] == "store_unavailable"
        while_down = capsys.readouterr().err

        store.come_back()
        assert client.get("/readyz").status_code == 200
        assert client.get("/api/v1/environments", headers=headers).status_code == 200
        after = capsys.readouterr().err

    assert "Traceback" not in while_down + after
    assert _count(while_down, "store unreachable") == 1, while_down
    assert _count(after, "store reachable again") == 1, after
    assert _count(while_down + after, "unhandled error") == 0


def test_openapi_describes_503_and_readyz(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url="sqlite://", role="api")
    schema = create_app(settings, migrate=False).openapi()
    ready = schema["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(ready)
    assert "Retry-After" in ready["503"]["headers"]
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, operation in operations.items():
            answer = operation["responses"].get("503")
            assert answer is not None, f"{method.upper()} {path} does not describe its 503"
            assert "Retry-After" in answer["headers"]


def test_nothing_that_answered_2xx_is_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with throwaway_cluster() as cluster:
        url = cluster.url()
        token = _token(url)
        settings = Settings(data_dir=tmp_path / "data", database_url=url, role="api")
        answered: list[tuple[str, int, str | None]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def writer(n: int, base: str) -> None:
            with httpx.Client(
                base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client:
                i = 0
                while not stop.is_set():
                    name = f"w{n}-{i}"
                    i += 1
                    response = client.post("/environments", json={"name": name})
                    with lock:
                        answered.append(
                            (name, response.status_code, response.headers.get("Retry-After"))
                        )
                    time.sleep(0.02)

        with LiveServer(settings) as server:
            threads = [
                threading.Thread(target=writer, args=(n, server.url), daemon=True) for n in range(4)
            ]
            for thread in threads:
                thread.start()
            time.sleep(1)
            cluster.stop()
            time.sleep(2)
            cluster.start()
            time.sleep(1.5)
            stop.set()
            for thread in threads:
                thread.join(30)
            with httpx.Client(
                base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}
            ) as client:
                stored = {e["name"] for e in client.get("/environments").json()}
        log = capsys.readouterr().err

    codes = {code for _, code, _ in answered}
    assert codes <= {201, 503}, codes
    assert 503 in codes, "the outage was seen"
    assert all(retry for _, code, retry in answered if code == 503)
    created = {name for name, code, _ in answered if code == 201}
    assert created and created <= stored, created - stored
    assert "Traceback" not in log


# -- a rollout cut by the outage --------------------------------------------------------------


def _poll(client: httpx.Client, path: str) -> Any:
    """GET that tolerates 503 (the store may still be coming back)."""
    response = client.get(path)
    return response.json() if response.status_code == 200 else None


def test_a_rollout_cut_by_the_outage_names_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    with throwaway_cluster() as cluster:
        url = cluster.url()
        token = _token(url)
        settings = Settings(
            data_dir=data_dir,
            database_url=url,
            role="all",
            lease_seconds=2,
            backups_enabled=False,
            health_enabled=False,
        )
        started = time.time() - 1
        try:
            with (
                LiveServer(settings) as server,
                httpx.Client(
                    base_url=f"{server.url}/api/v1",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                ) as client,
            ):

                def ok(method: str, path: str, status: int = 200, **kw: Any) -> Any:
                    response = client.request(method, path, **kw)
                    assert response.status_code == status, response.text
                    return response.json()

                ok("POST", "/environments", 201, json={"name": "dev"})
                svc = ok(
                    "POST",
                    "/services",
                    201,
                    json={
                        "environment": "dev",
                        "name": "web",
                        "command": SAMPLE_COMMAND,
                        "target_replicas": 1,
                        "health_check": {"path": "/health", "timeout": 30, "interval": 0.1},
                    },
                )
                for version in ("v1.0.0", "v2.0.0-slow"):
                    ok(
                        "POST",
                        "/artifacts",
                        201,
                        json={"service": svc["id"], "version": version, "commit_sha": SHA},
                    )

                def deploy(version: str) -> str:
                    body = {"service": "web", "version": version}
                    return str(ok("POST", "/deployments", 201, json=body)["id"])

                def wait(dep_id: str, statuses: set[str], timeout: float = 90) -> dict[str, Any]:
                    deadline = time.monotonic() + timeout
                    while True:
                        dep = _poll(client, f"/deployments/{dep_id}")
                        if dep and dep["status"] in statuses:
                            return dep  # type: ignore[no-any-return]
                        assert time.monotonic() < deadline, f"deployment stuck: {dep}"
                        time.sleep(0.2)

                first = deploy("v1.0.0")
                assert wait(first, TERMINAL)["status"] == "success"
                second = deploy("v2.0.0-slow")
                # A follower of the deployment's live events (as `pilothouse deploy` is).
                followed: list[str] = []

                def follow() -> None:
                    with client.stream("GET", f"/deployments/{second}/events") as stream:
                        for line in stream.iter_lines():
                            followed.append(line)
                            if line == "event: end":
                                return

                follower = threading.Thread(target=follow, daemon=True)
                follower.start()
                wait(second, {"deploying"})
                deadline = time.monotonic() + 30
                while not [
                    r for r in ok("GET", "/services/web/replicas") if r["status"] == "starting"
                ]:
                    assert time.monotonic() < deadline, "the slow replica never started"
                    time.sleep(0.1)
                capsys.readouterr()

                # The slow replica gets ready (5 s) while the store is away; the lease (2 s)
                # expires meanwhile.
                cluster.stop()
                time.sleep(7)
                cluster.start()

                outcome = wait(second, {"failed", "rolled_back"})
                logs = []
                deadline = time.monotonic() + 30
                while True:
                    page = ok("GET", f"/deployments/{second}/logs", params={"limit": 1000})
                    logs = [line["message"] for line in page["items"]]
                    if any("store" in m for m in logs) or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                follower.join(60)
            log = capsys.readouterr().err
        finally:
            # The replicas are detached processes: stop every sample app this test started.
            for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
                with contextlib.suppress(psutil.Error):
                    cmdline = " ".join(proc.info["cmdline"] or [])
                    if str(SAMPLE_APP) in cmdline and proc.info["create_time"] >= started:
                        proc.kill()
            cleanup(data_dir)

    text = "\n".join(logs)
    assert "the worker carrying this deployment died" not in text, text
    assert "store" in text and "unreachable" in text, text
    assert "store" in (outcome["error_message"] or ""), outcome
    # The event stream waited through the outage (saying why) and ended normally.
    assert any(line.startswith(": the store is unreachable") for line in followed), followed
    assert "event: end" in followed
    assert "Traceback" not in log
    assert _count(log, "store unreachable") == 1, log
    assert _count(log, "store reachable again") == 1, log


# -- the store's state and what reconciliation blames ------------------------------------------


def test_store_health_logs_each_change_once(capsys: pytest.CaptureFixture[str]) -> None:
    from pilothouse.core.store import StoreHealth

    configure("info")
    health = StoreHealth()
    assert health.mark_up() is False  # already up: nothing to say
    assert health.mark_down("connection refused") is True
    assert health.mark_down("connection refused") is False
    assert health.is_down and health.current() is not None
    assert health.mark_up() is True
    assert health.mark_up() is False
    log = capsys.readouterr().err
    assert _count(log, "store unreachable") == 1 and _count(log, "store reachable again") == 1
    [outage] = health.outages
    assert outage.reason == "connection refused" and outage.ended_at is not None
    assert health.outage_between(outage.started_at, outage.ended_at) == outage
    assert health.recovered_within(60)


def test_reconciliation_names_the_outage_that_let_a_lease_expire(tmp_path: Path) -> None:
    from datetime import timedelta

    from pilothouse.core.clock import utcnow
    from pilothouse.core.db import Database
    from pilothouse.deployments.engine import Engine

    async def scenario() -> list[tuple[str, str]]:
        db = Database(f"sqlite:///{tmp_path / 'x.db'}")
        try:
            engine = Engine(db, tmp_path, lease_seconds=15)
            quiet = engine._interruption(uuid4(), utcnow())
            db.health.mark_down("connection refused")
            db.health.mark_up()
            away = engine._interruption(uuid4(), utcnow())
            long_before = engine._interruption(uuid4(), utcnow() - timedelta(minutes=5))
            lost = uuid4()
            engine.lost[lost] = "connection lost"
            own = engine._interruption(lost, utcnow())
            return [quiet, away, long_before, own]
        finally:
            await db.dispose()

    quiet, away, long_before, own = asyncio.run(scenario())
    assert quiet == ("the worker carrying this deployment died; reconciling", "interrupted")
    assert "store was unreachable" in away[0] and "connection refused" in away[0]
    assert away[1] == "interrupted: the store was unreachable (connection refused)"
    assert long_before[1] == "interrupted"
    assert own[1] == "interrupted: the store was unreachable (connection lost)"


def test_cli_on_the_host_says_the_store_is_unreachable(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PILOTHOUSE_DATA_DIR": str(tmp_path),
        "PILOTHOUSE_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pilothouse", "db", "current"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: the store is unreachable (connection refused)"
