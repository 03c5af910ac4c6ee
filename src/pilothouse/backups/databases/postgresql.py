"""PostgreSQL: `pg_dump --format=custom` of an exported REPEATABLE READ snapshot, in which the
row counts and content checksums are taken while pg_dump streams (so they describe exactly what
the dump holds); `pg_restore` in one transaction to restore, `--list` to read a dump. The tools
used are the ones matching the server's major version. The password reaches them through
PGPASSWORD, never argv."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from pilothouse.backups.databases.base import (
    Contents,
    DatabaseError,
    Dump,
    feed,
    grow_pipe,
    run_restore,
    safe_dsn,
    stderr_tail,
    tool_version,
)
from pilothouse.backups.databases.commands import (
    pg_dump_argv,
    pg_dump_problem,
    pg_list_argv,
    pg_restore_argv,
    tool_major,
)

_TABLES = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
    ORDER BY 1, 2
"""

# Row text depends on these settings: fix them so the source and a restore print rows alike.
_STABLE_OUTPUT = (
    "SET TIME ZONE 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)


def connect(url: URL, *, autocommit: bool = False) -> Any:
    import psycopg

    kwargs: dict[str, Any] = {
        "host": url.host or "localhost",
        "port": url.port or 5432,
        "dbname": url.database or "postgres",
        "autocommit": autocommit,
        "connect_timeout": 10,
    }
    if url.username:
        kwargs["user"] = url.username
    if url.password is not None:
        kwargs["password"] = str(url.password)
    kwargs.update({k: v for k, v in url.query.items() if isinstance(v, str)})
    try:
        return psycopg.connect(**kwargs)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        raise DatabaseError(f"cannot connect to {safe_dsn(url)}: {first}") from None


def tool_env(url: URL) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PGHOST=url.host or "localhost",
        PGPORT=str(url.port or 5432),
        PGDATABASE=url.database or "postgres",
        PGAPPNAME="pilothouse-backup",
        PGCONNECT_TIMEOUT="10",
    )
    if url.username:
        env["PGUSER"] = url.username
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    sslmode = url.query.get("sslmode")
    if isinstance(sslmode, str):
        env["PGSSLMODE"] = sslmode
    return env


def pg_tool(name: str, server_major: int) -> str:
    """The pg_dump/pg_restore for a server: the same major version if installed, else a newer
    one (they read older servers); otherwise a clear error naming the package to install."""
    exact = Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")
    if exact.is_file():
        return str(exact)
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    found = [str(p) for p in candidates]
    if (on_path := shutil.which(name)) is not None:
        found.append(on_path)
    for path in found:
        if pg_dump_problem(tool_version(path), server_major) is None:
            return path
    have = ", ".join(f"{p} ({tool_major(tool_version(p))})" for p in found) or "none"
    raise DatabaseError(
        f"the server runs PostgreSQL {server_major}; {name} {server_major} or newer is needed "
        f"(install postgresql-client-{server_major}); found: {have}"
    )


def server_major(conn: Any) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def _contents(conn: Any, *, checksums: bool) -> Contents:
    from psycopg import sql

    for statement in _STABLE_OUTPUT:
        conn.execute(statement)
    found = Contents(checksums={} if checksums else None)
    for schema, table in conn.execute(_TABLES).fetchall():
        name = f"{schema}.{table}"
        relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        if checksums:
            # hashtextextended is stable across versions (hash partitioning relies on it)
            query = sql.SQL(
                "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM {} AS t"
            ).format(relation)
            count, total = conn.execute(query).fetchone()
            assert found.checksums is not None
            found.checksums[name] = f"{int(total) % (1 << 64):016x}"
        else:
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(relation)).fetchone()[0]
        found.counts[name] = int(count)
    return found


class PostgreSQL:
    kind = "postgresql"

    def check(self, url: URL) -> str:
        with connect(url) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
            tool = pg_tool("pg_dump", server_major(conn))
        return f"PostgreSQL {version}; {tool_version(tool)}"

    def dump(self, url: URL, *, checksums: bool) -> Dump:
        conn = connect(url)
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            tool = pg_tool("pg_dump", server_major(conn))
            version = tool_version(tool)
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Dump.close)
            process = subprocess.Popen(
                pg_dump_argv(tool, snapshot),
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=tool_env(url),
            )
        except BaseException:
            conn.close()
            raise
        assert process.stdout is not None
        grow_pipe(process.stdout.fileno())
        dump = Dump(process.stdout, version, "pg_dump", process, stderr)
        # Count (and checksum) in the exported snapshot while pg_dump streams: the same data.
        dump.count_alongside(
            lambda: _contents(conn, checksums=checksums), name="pg-contents", done=conn.close
        )
        return dump

    def contents(self, url: URL, *, checksums: bool) -> Contents:
        with connect(url) as conn:
            return _contents(conn, checksums=checksums)

    def is_empty(self, url: URL) -> bool:
        with connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
            ).fetchone()
            return int(row[0]) == 0

    def restore(self, url: URL, data: Iterable[bytes], *, clean: bool, size: int | None) -> None:
        """One transaction, killed before it can commit if `data` fails: the target is never
        left half-restored."""
        with connect(url) as conn:
            major = server_major(conn)
        argv = pg_restore_argv(
            pg_tool("pg_restore", major), url.database or "postgres", clean=clean
        )
        run_restore(argv, data, env=tool_env(url))

    def read_dump(self, data: Iterable[bytes], *, server_url: URL | None) -> str:
        tool = shutil.which("pg_restore") or "pg_restore"
        if server_url is not None:
            with contextlib.suppress(DatabaseError), connect(server_url) as conn:
                tool = pg_tool("pg_restore", server_major(conn))
        with tempfile.TemporaryFile() as listing, tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(
                pg_list_argv(tool), stdin=subprocess.PIPE, stdout=listing, stderr=stderr
            )
            feed(process, data, tolerate_close=True)
            code = process.wait()
            if code != 0:
                raise DatabaseError(f"pg_restore --list failed: {stderr_tail(stderr)}")
            listing.seek(0)
            entries = sum(
                1
                for line in listing.read().decode(errors="replace").splitlines()
                if line and not line.startswith(";")
            )
        if entries == 0:
            raise DatabaseError("pg_restore --list found no entries in the dump")
        return f"pg_restore --list: {entries} entries"

    @contextlib.contextmanager
    def scratch(self, url: URL) -> Iterator[URL]:
        name = f"pilothouse_drill_{secrets.token_hex(4)}"
        with connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name)
        finally:
            with connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def recognises(self, head: bytes) -> bool:
        return head.startswith(b"PGDMP")
