"""Database engines: dump, restore, check a dump's structure, count rows, scratch databases.

- postgresql: `pg_dump --format=custom` of a REPEATABLE READ snapshot that the row counts share
  (so the counts recorded are exactly what the dump holds); `pg_restore` to restore and `--list`
  to verify. The pg_dump/pg_restore used are the ones matching the server's major version.
- mariadb (and MySQL): `mariadb-dump --single-transaction`; restored with the `mariadb` client.
- sqlite: the online backup API into a private copy, which is then streamed.
Passwords reach the tools through the environment or a 0600 defaults file, never argv.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import URL, make_url

from pilothouse.core.urls import mask_url

ENGINES = ("postgresql", "mariadb", "sqlite")
STDERR_TAIL = 2000
PIPE_SIZE = 1024 * 1024


class EngineError(Exception):
    """A dump or restore failed; the message says why (never a password)."""


def parse_dsn(dsn: str) -> tuple[str, URL]:
    """(engine, URL) for postgresql://, mysql:// or mariadb://, or sqlite:///path."""
    try:
        url = make_url(dsn)
    except Exception:
        raise EngineError(
            "not a database URL (postgresql://, mariadb:// or sqlite:///path)"
        ) from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        return "postgresql", url
    if backend in ("mysql", "mariadb"):
        return "mariadb", url
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise EngineError("a sqlite URL needs a file path: sqlite:////abs/path.db")
        return "sqlite", url
    raise EngineError(f"unsupported database {backend!r}: use postgresql, mariadb or sqlite")


def safe_dsn(url: URL) -> str:
    """The URL with its credentials (password, libpq `?password=`) replaced by ***."""
    return mask_url(url.render_as_string(hide_password=False))


def _stderr_tail(handle: IO[bytes] | None) -> str:
    if handle is None:
        return ""
    handle.seek(0)
    text = handle.read()[-STDERR_TAIL:].decode(errors="replace").strip()
    return " | ".join(line for line in text.splitlines() if line.strip())


def _grow_pipe(fd: int) -> None:
    # A bigger pipe lets the dump tool run ahead while we compress (Linux only).
    with contextlib.suppress(Exception):
        import fcntl

        fcntl.fcntl(fd, 1031, PIPE_SIZE)  # F_SETPIPE_SZ


@dataclass
class Dump:
    """A running dump: read `stream` to the end, then call `finish()`."""

    stream: IO[bytes]
    tool_version: str
    tool: str = ""
    process: subprocess.Popen[bytes] | None = None
    stderr: IO[bytes] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    _after: list[Any] = field(default_factory=list)

    def finish(self) -> None:
        """Wait for the tool; raise EngineError if it failed. Row counts are final after this."""
        try:
            if self.process is not None:
                code = self.process.wait()
                if code != 0:
                    raise EngineError(
                        f"{self.tool} exited with {code}: "
                        f"{_stderr_tail(self.stderr) or 'no message'}"
                    )
            for step in self._after:
                step()
        finally:
            self.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stream.close()
        if self.stderr is not None:
            self.stderr.close()


# -- PostgreSQL --------------------------------------------------------------------------------


def _pg_connect(url: URL, *, autocommit: bool = False) -> Any:
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
        raise EngineError(f"cannot connect to {safe_dsn(url)}: {first}") from None


def _pg_env(url: URL) -> dict[str, str]:
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


def _tool_major(path: str) -> int:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


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
        if _tool_major(path) >= server_major:
            return path
    have = ", ".join(f"{p} ({_tool_major(p)})" for p in found) or "none"
    raise EngineError(
        f"the server runs PostgreSQL {server_major}; {name} {server_major} or newer is needed "
        f"(install postgresql-client-{server_major}); found: {have}"
    )


def _pg_server_major(conn: Any) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


_PG_TABLES = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
    ORDER BY 1, 2
"""


def _pg_counts(conn: Any) -> dict[str, int]:
    from psycopg import sql

    counts = {}
    for schema, table in conn.execute(_PG_TABLES).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        counts[f"{schema}.{table}"] = int(conn.execute(query).fetchone()[0])
    return counts


def _pg_dump(url: URL) -> Dump:
    conn = _pg_connect(url)
    try:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        tool = pg_tool("pg_dump", _pg_server_major(conn))
        version = subprocess.run(
            [tool, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Dump.close)
        process = subprocess.Popen(
            [tool, "--format=custom", "--compress=0", f"--snapshot={snapshot}", "--no-password"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_pg_env(url),
        )
    except BaseException:
        conn.close()
        raise
    assert process.stdout is not None
    _grow_pipe(process.stdout.fileno())
    dump = Dump(process.stdout, version, "pg_dump", process, stderr)
    # Count rows in the exported snapshot while pg_dump streams: the same data, in parallel.
    result: dict[str, Any] = {}

    def count() -> None:
        try:
            result["counts"] = _pg_counts(conn)
        except Exception as exc:
            result["error"] = exc

    counter = threading.Thread(target=count, name="pg-row-counts", daemon=True)
    counter.start()

    def after() -> None:
        counter.join()
        conn.close()
        if "error" in result:
            raise EngineError(f"row counts failed: {result['error']}")
        dump.counts.update(result["counts"])

    dump._after.append(after)
    return dump


def _pg_is_empty(url: URL) -> bool:
    with _pg_connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
        ).fetchone()
        return int(row[0]) == 0


# -- MariaDB / MySQL -------------------------------------------------------------------------


@contextlib.contextmanager
def _my_defaults(url: URL) -> Iterator[str]:
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


def _my_tool(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise EngineError(f"{names[0]} is not installed (Debian package mariadb-client)")


def _my_query(url: URL, query: str, database: str | None = None) -> list[list[str]]:
    client = _my_tool("mariadb", "mysql")
    with _my_defaults(url) as defaults:
        argv = [client, f"--defaults-extra-file={defaults}", "-N", "-B", "-e", query]
        if database:
            argv.append(database)
        proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        raise EngineError(f"mariadb: {proc.stderr.decode(errors='replace').strip()[:STDERR_TAIL]}")
    lines = proc.stdout.decode().splitlines()
    return [line.split("\t") for line in lines if line]


def _my_counts(url: URL, database: str) -> dict[str, int]:
    tables = _my_query(
        url,
        "SELECT table_name FROM information_schema.tables "
        f"WHERE table_schema = '{database}' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    if not tables:
        return {}
    parts = [f"SELECT '{t[0]}', COUNT(*) FROM `{t[0]}`" for t in tables]
    return {name: int(n) for name, n in _my_query(url, " UNION ALL ".join(parts), database)}


def _check_identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_$-]{1,64}", name):
        raise EngineError(f"database name {name!r} has characters pilothouse will not quote")
    return name


def _my_dump(url: URL) -> Dump:
    database = _check_identifier(url.database or "")
    tool = _my_tool("mariadb-dump", "mysqldump")
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()
    counts = _my_counts(url, database)
    defaults_cm = _my_defaults(url)
    defaults = defaults_cm.__enter__()
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Dump.close)
    process = subprocess.Popen(
        [
            tool,
            f"--defaults-extra-file={defaults}",
            "--single-transaction",
            "--quick",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            database,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    assert process.stdout is not None
    _grow_pipe(process.stdout.fileno())
    dump = Dump(process.stdout, version, "mariadb-dump", process, stderr, counts=counts)
    dump._after.append(lambda: defaults_cm.__exit__(None, None, None))
    return dump


def _my_is_empty(url: URL) -> bool:
    database = _check_identifier(url.database or "")
    rows = _my_query(
        url, f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{database}'"
    )
    return int(rows[0][0]) == 0


# -- SQLite --------------------------------------------------------------------------------------


def _sqlite_counts(path: str) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {n: int(conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n in names}
    finally:
        conn.close()


def _sqlite_dump(url: URL) -> Dump:
    source_path = str(url.database)
    if not Path(source_path).is_file():
        raise EngineError(f"sqlite database {source_path} does not exist")
    workdir = tempfile.mkdtemp(prefix="pilothouse-sqlite-")
    copy = os.path.join(workdir, "copy.db")
    try:
        source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)  # a consistent copy, even while others write (WAL)
        finally:
            target.close()
            source.close()
        counts = _sqlite_counts(copy)
        handle = open(copy, "rb")  # noqa: SIM115 (closed by Dump.close)
    except sqlite3.Error as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise EngineError(f"sqlite backup of {source_path} failed: {exc}") from None
    version = f"sqlite {sqlite3.sqlite_version} (online backup API)"
    dump = Dump(handle, version, "sqlite backup", counts=counts)
    dump._after.append(lambda: shutil.rmtree(workdir, ignore_errors=True))
    return dump


def _sqlite_is_empty(url: URL) -> bool:
    path = Path(str(url.database))
    if not path.exists() or path.stat().st_size == 0:
        return True
    return not _sqlite_has_objects(str(path))


def _sqlite_has_objects(path: str) -> bool:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]) > 0
    finally:
        conn.close()


# -- the engine-neutral surface --------------------------------------------------------------------


def start_dump(engine: str, url: URL) -> Dump:
    """Start dumping; the returned Dump's stream yields the engine's native dump format."""
    if engine == "postgresql":
        return _pg_dump(url)
    if engine == "mariadb":
        return _my_dump(url)
    return _sqlite_dump(url)


def row_counts(engine: str, url: URL) -> dict[str, int]:
    """Rows per table of a live database (the keys match the ones recorded at backup time)."""
    if engine == "postgresql":
        with _pg_connect(url) as conn:
            return _pg_counts(conn)
    if engine == "mariadb":
        return _my_counts(url, _check_identifier(url.database or ""))
    return _sqlite_counts(str(url.database))


def is_empty(engine: str, url: URL) -> bool:
    """True when the database holds no tables (a safe restore target)."""
    if engine == "postgresql":
        return _pg_is_empty(url)
    if engine == "mariadb":
        return _my_is_empty(url)
    return _sqlite_is_empty(url)


def _feed(process: subprocess.Popen[bytes], data: Iterable[bytes], *, tolerate_close: bool) -> None:
    """Write `data` into the process's stdin; an exception from `data` kills the process (so a
    damaged backup never reaches a commit)."""
    assert process.stdin is not None
    closed = False
    try:
        for piece in data:
            if closed:
                continue  # keep consuming: every chunk must still be authenticated
            try:
                process.stdin.write(piece)
            except BrokenPipeError:
                if not tolerate_close:
                    raise
                closed = True
    except BaseException:
        process.kill()
        process.wait()
        raise
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()


def restore(engine: str, url: URL, data: Iterable[bytes], *, clean: bool = False) -> None:
    """Restore a dump into `url`. PostgreSQL restores in one transaction, SQLite into a side
    file that replaces the target only when complete: a failure leaves the target as it was."""
    if engine == "postgresql":
        with _pg_connect(url) as conn:
            major = _pg_server_major(conn)
        argv = [
            pg_tool("pg_restore", major),
            f"--dbname={url.database or 'postgres'}",
            "--no-owner",
            "--no-acl",
            "--exit-on-error",
            "--single-transaction",
            "--no-password",
        ]
        if clean:
            argv += ["--clean", "--if-exists"]
        _run_restore(argv, data, env=_pg_env(url))
        return
    if engine == "mariadb":
        database = _check_identifier(url.database or "")
        with _my_defaults(url) as defaults:
            argv = [_my_tool("mariadb", "mysql"), f"--defaults-extra-file={defaults}", database]
            _run_restore(argv, data, env=None)
        return
    target = Path(str(url.database))
    side = target.with_name(f".{target.name}.restoring-{secrets.token_hex(4)}")
    try:
        with open(side, "wb") as handle:
            for piece in data:
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        _sqlite_integrity(side)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(side, target)
    finally:
        side.unlink(missing_ok=True)


def _run_restore(argv: list[str], data: Iterable[bytes], env: dict[str, str] | None) -> None:
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
        try:
            _feed(process, data, tolerate_close=False)
        except BrokenPipeError:
            process.wait()
            raise EngineError(
                f"{Path(argv[0]).name} stopped reading: {_stderr_tail(stderr) or 'no message'}"
            ) from None
        code = process.wait()
        if code != 0:
            raise EngineError(
                f"{Path(argv[0]).name} exited with {code}: {_stderr_tail(stderr) or 'no message'}"
            )


def _sqlite_integrity(path: Path) -> None:
    with open(path, "rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            raise EngineError("the dump is not an SQLite database file")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    if result != "ok":
        raise EngineError(f"SQLite integrity_check: {result}")


def check_structure(engine: str, data: Iterable[bytes], *, server_url: URL | None) -> str:
    """The engine's own reading of a dump (pg_restore --list, the dump's completion marker, an
    SQLite integrity_check); returns a one-line summary or raises EngineError."""
    if engine == "postgresql":
        tool = shutil.which("pg_restore") or "pg_restore"
        if server_url is not None:
            with contextlib.suppress(EngineError), _pg_connect(server_url) as conn:
                tool = pg_tool("pg_restore", _pg_server_major(conn))
        with tempfile.TemporaryFile() as listing, tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(
                [tool, "--list"], stdin=subprocess.PIPE, stdout=listing, stderr=stderr
            )
            _feed(process, data, tolerate_close=True)
            code = process.wait()
            if code != 0:
                raise EngineError(f"pg_restore --list failed: {_stderr_tail(stderr)}")
            listing.seek(0)
            entries = sum(
                1
                for line in listing.read().decode(errors="replace").splitlines()
                if line and not line.startswith(";")
            )
        if entries == 0:
            raise EngineError("pg_restore --list found no entries in the dump")
        return f"pg_restore --list: {entries} entries"
    if engine == "mariadb":
        tail = b""
        for piece in data:
            tail = (tail + piece)[-4096:]
        if b"-- Dump completed" not in tail:
            raise EngineError("the SQL dump has no completion marker: it was cut short")
        return "mariadb-dump completion marker present"
    with tempfile.TemporaryDirectory(prefix="pilothouse-verify-") as workdir:
        path = Path(workdir) / "check.db"
        with open(path, "wb") as handle:
            for piece in data:
                handle.write(piece)
        _sqlite_integrity(path)
        tables = len(_sqlite_counts(str(path)))
    return f"SQLite integrity_check ok, {tables} tables"


@contextlib.contextmanager
def scratch_database(engine: str, url: URL) -> Iterator[URL]:
    """A new empty database beside the source (dropped afterwards) for restore drills."""
    name = f"pilothouse_drill_{secrets.token_hex(4)}"
    if engine == "postgresql":
        with _pg_connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name)
        finally:
            with _pg_connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    if engine == "mariadb":
        _my_query(url, f"CREATE DATABASE `{name}`")
        try:
            yield url.set(database=name)
        finally:
            _my_query(url, f"DROP DATABASE IF EXISTS `{name}`")
        return
    with tempfile.TemporaryDirectory(prefix="pilothouse-drill-") as workdir:
        yield url.set(database=str(Path(workdir) / f"{name}.db"))
