"""Fixtures: a clean real database per test (SQLite and PostgreSQL), the app, live servers.

PostgreSQL tests use a throwaway database created for the run on PILOTHOUSE_TEST_PG_URL
(default postgresql://postgres@127.0.0.1:5432/test). Without a server they skip with the reason;
with PILOTHOUSE_REQUIRE_POSTGRES=1 (as in CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from pilothouse import migrations
from pilothouse.access import Principal
from pilothouse.app import create_app
from pilothouse.config import Settings
from pilothouse.core.db import Database
from pilothouse.setup import _bootstrap
from pilothouse.users import service as users

PG_ADMIN_URL = os.environ.get("PILOTHOUSE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("PILOTHOUSE_REQUIRE_POSTGRES") == "1"


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(exc).strip()[:120]}"


@pytest.fixture(scope="session", autouse=True)
def run_as_user() -> None:
    """As root, replicas and commands run as the unprivileged user `init` creates."""
    from pilothouse.drivers.sandbox import ensure_run_user

    ensure_run_user()


@pytest.fixture
def child_tmp() -> Iterator[Path]:
    """A directory replicas and commands may write to (they run unprivileged when the tests
    run as root, and pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="pilothouse-child-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrations.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    reason = _pg_available()
    if reason:
        if REQUIRE_PG:
            pytest.fail(f"PILOTHOUSE_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    name = f"pilothouse_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
    migrations.upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _truncate_pg(url: str) -> None:
    plain = str(sa.engine.make_url(url).set(drivername="postgresql"))
    with psycopg.connect(plain, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


#: For end-to-end scenarios whose outcome does not depend on the store (a driver, the CLI, the
#: supervisor): they run on SQLite only. Every store guarantee (constraints, leases, claims,
#: concurrency, what is written where) keeps its own test on both databases.
one_store = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
#: The same, on PostgreSQL: for a scenario whose store-level check is written for the
#: production store (a pg_dump of every table, say).
production_store = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "pilothouse.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """The test database opened as the application opens it, for `async def` tests that call
    services directly (the one way to do async setup: no asyncio.run inside tests)."""
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def admin(db: Database) -> Principal:
    """A bootstrapped admin user, as the principal service calls take."""
    async with db.session() as session:
        user, _ = await users.bootstrap_admin(session, "admin")
        return Principal(id=user.id, name=user.name, role="admin")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # API-only: no worker picks up the deployments these tests drive by hand.
    return Settings(data_dir=tmp_path / "data", database_url=db_url, role="api")


@pytest.fixture
def admin_token(db_url: str) -> str:
    token = asyncio.run(_bootstrap(db_url, "admin"))
    assert token is not None
    return token


class Api:
    """A TestClient bound to one token; methods return the httpx response."""

    def __init__(self, client: TestClient, token: str | None) -> None:
        self.client = client
        self.token = token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(f"/api/v1{path}", headers=self._headers(), **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.client.post(f"/api/v1{path}", json=body, headers=self._headers(), **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.client.patch(f"/api/v1{path}", json=body, headers=self._headers(), **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.client.put(f"/api/v1{path}", json=body, headers=self._headers(), **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(f"/api/v1{path}", headers=self._headers(), **kw)

    def as_(self, token: str | None) -> Api:
        return Api(self.client, token)

    def ok(self, response: Any, status: int = 200) -> Any:
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def user(self, name: str, role: str) -> str:
        """Create a user and return their token."""
        body = self.ok(self.post("/users", {"name": name, "role": role}), 201)
        token: str = body["token"]["token"]
        return token


@pytest.fixture
def api(settings: Settings, admin_token: str) -> Iterator[Api]:
    with TestClient(create_app(settings, migrate=False)) as client:
        yield Api(client, admin_token)


SHA = "a" * 40


@pytest.fixture
def world(api: Api) -> dict[str, Any]:
    """An environment, a service in it and two artifacts, created by the admin."""
    env = api.ok(api.post("/environments", {"name": "prod", "type": "production"}), 201)
    svc = api.ok(
        api.post("/services", {"environment": "prod", "name": "web", "command": "run {port}"}), 201
    )
    arts = [
        api.ok(api.post("/artifacts", {"service": svc["id"], "version": v, "commit_sha": SHA}), 201)
        for v in ("v1.0.0", "v1.1.0")
    ]
    return {"env": env, "service": svc, "artifacts": arts}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """A real uvicorn server on a free loopback port, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(settings: Settings, admin_token: str) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server


@pytest.fixture
def stack(db_url: str, admin_token: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """pilothouse serve as a subprocess (API and worker) on the test database; cleaned up after."""
    # engine_support imports this module (free_port): a real cycle, so imported here.
    from tests.engine_support import Client, ServerProcess, cleanup

    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "PILOTHOUSE_DATA_DIR": str(data_dir),
        "PILOTHOUSE_DATABASE_URL": db_url,
        "PILOTHOUSE_LEASE_SECONDS": "2",
        "PILOTHOUSE_TEST_MARK": str(data_dir),
        "PILOTHOUSE_CHILD_ENV": "PILOTHOUSE_TEST_MARK",  # so cleanup() finds the replicas
    }
    servers: list[ServerProcess] = []

    def server(role: str = "all") -> ServerProcess:
        srv = ServerProcess(env, role)
        servers.append(srv)  # before start(): a server that fails to come up is still stopped
        return srv.start()

    try:
        first = server()
        yield {
            "server": first,
            "client": Client(first.url, admin_token),
            "spawn": server,
            "token": admin_token,
            "data_dir": data_dir,
            "env": env,
        }
    finally:
        for srv in servers:
            srv.stop()
        cleanup(data_dir)


@pytest.fixture
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `@pytest.mark.disk_size("64k")` (default 64k) to fill up; skips where
    mounting is not allowed."""
    marker = request.node.get_closest_marker("disk_size")
    size = marker.args[0] if marker else "64k"
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
