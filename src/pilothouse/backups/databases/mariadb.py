"""MariaDB (and MySQL): `mariadb-dump --single-transaction`, restored with the `mariadb` client.

Same snapshot: with content checksums on, pilothouse blocks commits (`BACKUP STAGE
BLOCK_COMMIT` on MariaDB 10.4+, `FLUSH TABLES WITH READ LOCK` on MySQL; both need the RELOAD
privilege), opens its own consistent-snapshot transaction, starts mariadb-dump, and lets commits
through again as soon as the dump's output shows it has opened its own: nothing commits in
between, so the counts and checksums describe exactly what the dump holds. Commits wait for that
instant only. Without the privilege the counts come from a snapshot taken just before the dump,
and no checksums are recorded.

Restore: the `mariadb` client is not transactional (DDL commits), so the whole object is
verified into a private temporary file before the client reads a byte of it.
Passwords reach the tools through a private 0600 defaults file, never argv or the environment.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, cast

from sqlalchemy.engine import URL

from pilothouse.backups.databases.base import (
    Contents,
    DatabaseError,
    Dump,
    PartialRestore,
    grow_pipe,
    run_restore,
    safe_dsn,
    spooled,
    tool_version,
)
from pilothouse.backups.databases.commands import (
    mariadb_argv,
    mariadb_dump_argv,
    mariadb_dump_problem,
)

COMPLETED = b"-- Dump completed"
# Lines mariadb-dump writes only after it opened its transaction (the header comes before).
_AFTER_SNAPSHOT = (
    b"-- Table structure for table",
    b"-- Dumping routines",
    b"-- Dumping events",
    COMPLETED,
)


def check_identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_$-]{1,64}", name):
        raise DatabaseError(f"database name {name!r} has characters pilothouse will not quote")
    return name


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def connect(url: URL, *, database: bool = True) -> Any:
    import pymysql

    try:
        return pymysql.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "root",
            password=str(url.password or ""),
            database=check_identifier(url.database or "") if database else None,
            connect_timeout=10,
            charset="utf8mb4",
        )
    except pymysql.err.MySQLError as exc:
        message = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise DatabaseError(f"cannot connect to {safe_dsn(url)}: {message}") from None


@contextlib.contextmanager
def defaults_file(url: URL) -> Iterator[str]:
    """A private [client] defaults file: the password never appears in argv or the env."""
    fd, path = tempfile.mkstemp(prefix="pilothouse-my-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("[client]\n")
            handle.write(f"host={url.host or '127.0.0.1'}\nport={url.port or 3306}\n")
            if url.username:
                handle.write(f"user={url.username}\n")
            if url.password is not None:
                escaped = str(url.password).replace("\\", "\\\\").replace('"', '\\"')
                handle.write(f'password="{escaped}"\n')
        yield path
    finally:
        os.unlink(path)


def _tool(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise DatabaseError(f"{names[0]} is not installed (Debian package mariadb-client)")


def _contents(conn: Any, database: str, *, checksums: bool) -> Contents:
    found = Contents(checksums={} if checksums else None)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY 1",
            (database,),
        )
        tables = [str(row[0]) for row in cur.fetchall()]
        for table in tables:
            if not checksums:
                cur.execute(f"SELECT COUNT(*) FROM {_quote(table)}")
                found.counts[table] = int(cur.fetchone()[0])
                continue
            cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (database, table),
            )
            columns = [str(row[0]) for row in cur.fetchall()]
            # Each column's bytes as stored (an ENUM's label, a number's text), NULL distinct.
            row = ", ".join(f"IFNULL(CAST({_quote(c)} AS BINARY), 0xff00)" for c in columns)
            cur.execute(
                "SELECT COUNT(*), COALESCE(SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, "
                f"{row})), 16), 16, 10) AS UNSIGNED)), 0) FROM {_quote(table)}"
            )
            count, total = cur.fetchone()
            found.counts[table] = int(count)
            assert found.checksums is not None
            found.checksums[table] = f"{int(total) % (1 << 64):016x}"
    return found


def _snapshot(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")  # TIMESTAMP text, alike everywhere
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")


def _block_commits(url: URL) -> Any | None:
    """A connection that keeps commits from happening (closing it lets them through), or None
    without the privilege. MariaDB 10.4+: `BACKUP STAGE BLOCK_COMMIT`, which waits for commits in
    flight only, not for long queries; MySQL: FLUSH TABLES WITH READ LOCK."""
    import pymysql

    conn = connect(url)
    for statements in (
        ("BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"),
        ("FLUSH TABLES WITH READ LOCK",),
    ):
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 10")
                for statement in statements:
                    cur.execute(statement)
            return conn
        except pymysql.err.MySQLError:
            with contextlib.suppress(pymysql.err.MySQLError), conn.cursor() as cur:
                cur.execute("BACKUP STAGE END")
    conn.close()
    return None


class _Tap(io.RawIOBase):
    """Reads the dump's stdout and calls `seen()` once a line written after the dump opened its
    transaction goes by."""

    def __init__(self, inner: IO[bytes], seen: Callable[[], None]) -> None:
        self.inner, self.seen, self.tail, self.done = inner, seen, b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if not self.done:
            window = self.tail + data
            if n == 0 or any(marker in window for marker in _AFTER_SNAPSHOT):
                self.done = True
                self.seen()
            self.tail = window[-64:]
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()


class MariaDB:
    kind = "mariadb"

    def check(self, url: URL) -> str:
        conn = connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                server = str(cur.fetchone()[0])
        finally:
            conn.close()
        version = tool_version(_tool("mariadb-dump", "mysqldump"))
        problem = mariadb_dump_problem(version, server)
        if problem:
            raise DatabaseError(problem)
        return f"server {server}; {version}"

    def dump(self, url: URL, *, checksums: bool) -> Dump:
        database = check_identifier(url.database or "")
        tool = _tool("mariadb-dump", "mysqldump")
        version = tool_version(tool)
        lock = _block_commits(url) if checksums else None
        release_lock = threading.Lock()

        def release() -> None:
            nonlocal lock
            with release_lock:
                if lock is not None:
                    with contextlib.suppress(Exception):
                        lock.close()  # closing the session lets commits through again
                    lock = None

        snap = None
        try:
            snap = connect(url)
            _snapshot(snap)
            same_snapshot = lock is not None
            defaults_cm = defaults_file(url)
            defaults = defaults_cm.__enter__()
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Dump.close)
            process = subprocess.Popen(
                mariadb_dump_argv(tool, defaults, database), stdout=subprocess.PIPE, stderr=stderr
            )
        except BaseException:
            release()
            if snap is not None:
                snap.close()
            raise
        assert process.stdout is not None
        grow_pipe(process.stdout.fileno())
        stream = cast(IO[bytes], _Tap(process.stdout, release))
        dump = Dump(stream, version, "mariadb-dump", process, stderr)

        def forget_defaults() -> None:
            defaults_cm.__exit__(None, None, None)

        dump.cleanup += [release, forget_defaults, snap.close]
        dump.count_alongside(
            lambda: _contents(snap, database, checksums=same_snapshot), name="mariadb-contents"
        )
        return dump

    def contents(self, url: URL, *, checksums: bool) -> Contents:
        conn = connect(url)
        try:
            _snapshot(conn)
            return _contents(conn, check_identifier(url.database or ""), checksums=checksums)
        finally:
            conn.close()

    def is_empty(self, url: URL) -> bool:
        conn = connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s",
                    (check_identifier(url.database or ""),),
                )
                return int(cur.fetchone()[0]) == 0
        finally:
            conn.close()

    def restore(self, url: URL, data: Iterable[bytes], *, clean: bool, size: int | None) -> None:
        """Verify the whole object into a private file, then feed it to the client. Only a
        failure of the client itself (PartialRestore) can have changed the target."""
        database = check_identifier(url.database or "")
        client = _tool("mariadb", "mysql")
        with spooled(data, size=size) as path:
            with open(path, "rb") as handle:
                handle.seek(max(0, path.stat().st_size - 4096))
                if COMPLETED not in handle.read():
                    raise DatabaseError("the SQL dump has no completion marker: it was cut short")
            with defaults_file(url) as defaults, open(path, "rb") as handle:
                pieces = iter(lambda: handle.read(1024 * 1024), b"")
                run_restore(
                    mariadb_argv(client, defaults, database), pieces, None, failure=PartialRestore
                )

    def read_dump(self, data: Iterable[bytes], *, server_url: URL | None) -> str:
        tail = b""
        for piece in data:
            tail = (tail + piece)[-4096:]
        if COMPLETED not in tail:
            raise DatabaseError("the SQL dump has no completion marker: it was cut short")
        return "mariadb-dump completion marker present"

    @contextlib.contextmanager
    def scratch(self, url: URL) -> Iterator[URL]:
        name = f"pilothouse_drill_{secrets.token_hex(4)}"
        conn = connect(url, database=False)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {_quote(name)} CHARACTER SET utf8mb4")
            yield url.set(database=name)
        finally:
            with contextlib.suppress(Exception), conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {_quote(name)}")
            conn.close()

    def recognises(self, head: bytes) -> bool:
        # recent mariadb-dump versions put a `/*M!999999\- enable the sandbox mode */` first
        start = head[:512]
        return b"-- MariaDB dump" in start or start.startswith(b"-- MySQL dump")
