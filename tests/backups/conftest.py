"""Fixtures for backups: a keyed data directory, a context on the test store, and real source
databases (PostgreSQL built with pgbench plus varied types, MariaDB, SQLite)."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import sqlalchemy as sa

from pilothouse.access import SYSTEM
from pilothouse.backups import jobs, service
from pilothouse.backups.models import Backup
from pilothouse.backups.schemas import TargetCreate
from pilothouse.core.db import Database
from pilothouse.setup import ensure_master_key
from tests.conftest import PG_ADMIN_URL, REQUIRE_PG, _pg_available

T = TypeVar("T")
MARIADB_URL = os.environ.get("PILOTHOUSE_TEST_MARIADB_URL", "mariadb://root@127.0.0.1:3306/test")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def need_pg() -> None:
    reason = _pg_available()
    if reason:
        if REQUIRE_PG:
            pytest.fail(f"PILOTHOUSE_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    ensure_master_key(path / "master.key")
    return path


class Harness:
    """A BackupContext on the test store plus helpers that go through the real services."""

    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.db_url = db_url
        self.data_dir = data_dir

    def ctx(self, **kw: Any) -> jobs.BackupContext:
        kw.setdefault("lease_seconds", 2.0)
        kw.setdefault("store_url", self.db_url)
        return jobs.BackupContext(Database(self.db_url), self.data_dir, **kw)

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        async def go() -> Any:
            ctx = self.ctx()
            try:
                return await fn(ctx, *args, **kw)
            finally:
                await ctx.db.dispose()

        return run(go())

    def target(self, name: str, dsn: str, **fields: Any) -> uuid.UUID:
        async def go(ctx: jobs.BackupContext) -> uuid.UUID:
            async with ctx.db.session() as session:
                body = TargetCreate(name=name, dsn=dsn, **fields)  # type: ignore[arg-type]
                target = await service.create_target(session, SYSTEM, ctx.keyring(), body)
                return target.id

        result: uuid.UUID = self.call(go)
        return result

    def new_backup(self, target_id: uuid.UUID, trigger: str = "manual") -> uuid.UUID:
        async def go(ctx: jobs.BackupContext) -> uuid.UUID:
            async with ctx.db.session() as session:
                target = await service.get_target(session, SYSTEM, str(target_id))
                backup = await service.new_backup(
                    session, target, ctx.storage(target), trigger=trigger, actor=SYSTEM
                )
                return backup.id

        result: uuid.UUID = self.call(go)
        return result

    def backup(self, target_id: uuid.UUID, **kw: Any) -> Backup:
        backup_id = self.new_backup(target_id)
        result: Backup = self.call(jobs.run_backup, backup_id, **kw)
        return result

    def get(self, backup_id: uuid.UUID) -> Backup:
        async def go(ctx: jobs.BackupContext) -> Backup:
            async with ctx.db.session(write=False) as session:
                row = await session.get(Backup, backup_id)
                assert row is not None
                return row

        result: Backup = self.call(go)
        return result

    def object_path(self, backup: Backup) -> Path:
        return self.data_dir / "backups" / backup.object_key


@pytest.fixture
def harness(db_url: str, data_dir: Path) -> Harness:
    return Harness(db_url, data_dir)


# -- source databases ------------------------------------------------------------------------


def _pgbench() -> str:
    found = shutil.which("pgbench") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)), None
    )
    if found is None:
        pytest.fail("pgbench is needed (Debian package postgresql-15 or postgresql-contrib)")
    return found


VARIED_TYPES = """
CREATE TABLE varied (
    id bigserial PRIMARY KEY,
    blob bytea,
    doc jsonb,
    tags text[],
    happened timestamptz,
    body text,
    amount numeric(12, 2),
    flag boolean
);
INSERT INTO varied (blob, doc, tags, happened, body, amount, flag)
SELECT decode(md5(g::text) || md5((g * 7)::text), 'hex'),
       jsonb_build_object('n', g, 'nested', jsonb_build_object('s', 'ünïcødé ' || g), 'list',
                          jsonb_build_array(g, g + 1, NULL)),
       ARRAY['a' || g, 'b,"quoted"', NULL],
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
       repeat(md5(g::text), 1 + g % 200),
       g * 1.25,
       g % 2 = 0
FROM generate_series(1, 3000) AS g;
INSERT INTO varied (blob, doc, tags, happened, body) VALUES
    ('\\x00ff00'::bytea, '{}', '{}', NULL, ''), (NULL, 'null', NULL, 'infinity', NULL);
CREATE VIEW varied_recent AS SELECT id, happened FROM varied WHERE happened > '2026-01-02';
"""


def pg_fingerprint(url: str) -> dict[str, str]:
    """md5 of every table's rows in a stable order: equal fingerprints mean equal data."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {
            t: conn.execute(
                "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' "
                f"ORDER BY x::text)), '') FROM \"{t}\" x"
            ).fetchone()[0]
            for t in tables
        }


@pytest.fixture
def pg_source() -> Iterator[str]:
    """A PostgreSQL database built with pgbench (scale 1) plus a table of varied types."""
    need_pg()
    name = f"bk_src_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
    admin = sa.engine.make_url(PG_ADMIN_URL)
    subprocess.run(
        [
            _pgbench(),
            "-i",
            "-s",
            "1",
            "-q",
            "-h",
            admin.host or "127.0.0.1",
            "-p",
            str(admin.port or 5432),
            "-U",
            admin.username or "postgres",
            name,
        ],
        check=True,
        capture_output=True,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(VARIED_TYPES)
    yield url
    drop_pg(name)


def drop_pg(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_empty() -> Iterator[str]:
    """An empty PostgreSQL database to restore into."""
    need_pg()
    name = f"bk_dst_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
    drop_pg(name)


def mariadb(sql: str, database: str | None = None) -> str:
    url = sa.engine.make_url(MARIADB_URL)
    argv = [
        "mariadb",
        "-h",
        url.host or "127.0.0.1",
        "-P",
        str(url.port or 3306),
        "-u",
        url.username or "root",
        "-N",
        "-B",
        "-e",
        sql,
    ]
    if database:
        argv.append(database)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"MariaDB at {MARIADB_URL}: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture
def maria_source() -> Iterator[str]:
    name = f"bk_src_{uuid.uuid4().hex[:8]}"
    mariadb(f"CREATE DATABASE {name}")
    mariadb(
        "CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, blob_col BLOB, doc JSON, "
        "body LONGTEXT, at DATETIME(6), price DECIMAL(10,2));"
        "INSERT INTO items (blob_col, doc, body, at, price) "
        "SELECT UNHEX(MD5(seq)), JSON_OBJECT('n', seq, 's', 'ünï'), "
        "REPEAT(MD5(seq), 1 + seq % 50), "
        "'2026-01-01 00:00:00' + INTERVAL seq MINUTE, seq * 1.5 FROM seq_1_to_2000;"
        "CREATE TABLE empty_one (id INT PRIMARY KEY);",
        name,
    )
    url = str(sa.engine.make_url(MARIADB_URL).set(database=name))
    yield url
    mariadb(f"DROP DATABASE IF EXISTS {name}")


def maria_fingerprint(database: str) -> str:
    return mariadb(
        "SELECT COUNT(*), MD5(GROUP_CONCAT(CONCAT_WS('|', id, HEX(blob_col), doc, body, at, price) "
        "ORDER BY id SEPARATOR ',')) FROM items",
        database,
    ).strip()


@pytest.fixture
def sqlite_source(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, data BLOB, at TEXT)")
    conn.executemany(
        "INSERT INTO notes (body, data, at) VALUES (?, ?, ?)",
        [
            (f"note {i} " * (i % 30), os.urandom(64), f"2026-01-01T00:{i % 60:02d}")
            for i in range(4000)
        ],
    )
    conn.execute("CREATE TABLE empty_one (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    return path
