"""SQLite: the online backup API copies the database consistently (even while it is written)
into a private file, which is then streamed; counts and checksums are read from that copy.
A restore writes beside the target and renames over it only when whole and sound."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sqlalchemy.engine import URL

from pilothouse.backups.databases.base import (
    Contents,
    DatabaseError,
    Dump,
    combine,
    row_digest,
)

MAGIC = b"SQLite format 3\x00"


def _contents(path: str, *, checksums: bool) -> Contents:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    found = Contents(checksums={} if checksums else None)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            if checksums:
                count = 0

                def digests(table: str = quoted) -> Iterator[bytes]:
                    nonlocal count
                    for row in conn.execute(f"SELECT * FROM {table}"):
                        count += 1
                        yield row_digest(tuple(row))

                assert found.checksums is not None
                found.checksums[name] = combine(digests())
                found.counts[name] = count
            else:
                found.counts[name] = int(
                    conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
                )
    finally:
        conn.close()
    return found


def integrity(path: Path) -> None:
    with open(path, "rb") as handle:
        if handle.read(16) != MAGIC:
            raise DatabaseError("the dump is not an SQLite database file")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    if result != "ok":
        raise DatabaseError(f"SQLite integrity_check: {result}")


class SQLite:
    kind = "sqlite"

    def check(self, url: URL) -> str:
        path = Path(str(url.database))
        if not path.is_file():
            raise DatabaseError(f"sqlite database {path} does not exist")
        integrity(path)
        return f"sqlite {sqlite3.sqlite_version}: {path} is sound"

    def dump(self, url: URL, *, checksums: bool) -> Dump:
        source_path = str(url.database)
        if not Path(source_path).is_file():
            raise DatabaseError(f"sqlite database {source_path} does not exist")
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
            contents = _contents(copy, checksums=checksums)
            handle = open(copy, "rb")  # noqa: SIM115 (closed by Dump.close)
        except sqlite3.Error as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise DatabaseError(f"sqlite backup of {source_path} failed: {exc}") from None
        version = f"sqlite {sqlite3.sqlite_version} (online backup API)"
        dump = Dump(handle, version, "sqlite backup", contents=contents)
        dump.cleanup.append(lambda: shutil.rmtree(workdir, ignore_errors=True))
        return dump

    def contents(self, url: URL, *, checksums: bool) -> Contents:
        return _contents(str(url.database), checksums=checksums)

    def is_empty(self, url: URL) -> bool:
        path = Path(str(url.database))
        if not path.exists() or path.stat().st_size == 0:
            return True
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]) == 0
        finally:
            conn.close()

    def restore(self, url: URL, data: Iterable[bytes], *, clean: bool, size: int | None) -> None:
        target = Path(str(url.database))
        write_beside(target, data, check=integrity)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)

    def read_dump(self, data: Iterable[bytes], *, server_url: URL | None) -> str:
        with tempfile.TemporaryDirectory(prefix="pilothouse-verify-") as workdir:
            path = Path(workdir) / "check.db"
            with open(path, "wb") as handle:
                for piece in data:
                    handle.write(piece)
            integrity(path)
            tables = len(_contents(str(path), checksums=False).counts)
        return f"SQLite integrity_check ok, {tables} tables"

    @contextlib.contextmanager
    def scratch(self, url: URL) -> Iterator[URL]:
        name = f"pilothouse_drill_{secrets.token_hex(4)}"
        with tempfile.TemporaryDirectory(prefix="pilothouse-drill-") as workdir:
            yield url.set(database=str(Path(workdir) / f"{name}.db"))

    def recognises(self, head: bytes) -> bool:
        return head.startswith(MAGIC)


def write_beside(
    target: Path,
    data: Iterable[bytes],
    *,
    check: Callable[[Path], None] | None = None,
    mode: int = 0o666,
) -> None:
    """Write `data` to a side file next to `target` (created with `mode`, less the umask), fsync
    it, run `check(path)`, and only then rename it over `target`: a failure leaves `target` as
    it was."""
    side = target.with_name(f".{target.name}.restoring-{secrets.token_hex(4)}")
    try:
        fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            for piece in data:
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        if check is not None:
            check(side)
        os.replace(side, target)
    finally:
        side.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):  # left by reading a WAL-mode copy (empty: read-only)
            Path(f"{side}{suffix}").unlink(missing_ok=True)
