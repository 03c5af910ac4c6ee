"""What every database kind shares: the protocol, a running dump, errors, DSN parsing, and the
plumbing that feeds a restore tool or spools a verified copy to disk."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy.engine import URL, make_url

from pilothouse.core.urls import mask_url

STDERR_TAIL = 2000
PIPE_SIZE = 1024 * 1024


class DatabaseError(Exception):
    """A dump, check or restore failed; the message says why (never a password)."""


class PartialRestore(DatabaseError):
    """The restore tool failed after it had started writing: the target may hold part of it."""


@dataclass
class Contents:
    """Rows per table, and (when asked for) a content checksum per table, of one snapshot."""

    counts: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] | None = None


@dataclass
class Dump:
    """A running dump: read `stream` to the end, then call `finish()`; `contents` is final
    (rows and checksums taken in the dump's own snapshot) once finish() returned."""

    stream: IO[bytes]
    tool_version: str
    tool: str = ""
    process: subprocess.Popen[bytes] | None = None
    stderr: IO[bytes] | None = None
    contents: Contents = field(default_factory=Contents)
    after: list[Callable[[], None]] = field(default_factory=list)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def finish(self) -> None:
        """Wait for the tool; raise DatabaseError if it failed."""
        try:
            if self.process is not None:
                code = self.process.wait()
                if code != 0:
                    raise DatabaseError(
                        f"{self.tool} exited with {code}: "
                        f"{stderr_tail(self.stderr) or 'no message'}"
                    )
            for step in self.after:
                step()
        finally:
            self.close()

    def count_alongside(
        self, compute: Callable[[], Contents], *, name: str, done: Callable[[], None] | None = None
    ) -> None:
        """Take the contents (rows, checksums) in a thread while the tool streams, in the same
        snapshot; finish() waits for them (then calls `done`) and fails if they failed."""
        result: dict[str, Contents | Exception] = {}

        def count() -> None:
            try:
                result["contents"] = compute()
            except Exception as exc:
                result["error"] = exc

        counter = threading.Thread(target=count, name=name, daemon=True)
        counter.start()

        def after() -> None:
            counter.join()
            if done is not None:
                done()
            if "error" in result:
                raise DatabaseError(f"row counts failed: {result['error']}")
            contents = result["contents"]
            assert isinstance(contents, Contents)
            self.contents = contents

        self.after.append(after)

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
        while self.cleanup:
            with contextlib.suppress(Exception):
                self.cleanup.pop()()


class SourceDatabase(Protocol):
    """One kind of database pilothouse backs up (postgresql, mariadb, sqlite)."""

    kind: str

    def check(self, url: URL) -> str:
        """Connect, and check the dump tool against the server; a one-line summary."""
        ...

    def dump(self, url: URL, *, checksums: bool) -> Dump:
        """Start a dump; its stream yields the database's native dump format."""
        ...

    def contents(self, url: URL, *, checksums: bool) -> Contents:
        """Rows (and content checksums) per table of a live database."""
        ...

    def is_empty(self, url: URL) -> bool:
        """True when the database holds no tables (a safe restore target)."""
        ...

    def restore(self, url: URL, data: Iterable[bytes], *, clean: bool, size: int | None) -> None:
        """Restore a dump; anything but PartialRestore means the target was not touched."""
        ...

    def read_dump(self, data: Iterable[bytes], *, server_url: URL | None) -> str:
        """The database's own reading of a dump; a one-line summary or DatabaseError."""
        ...

    def scratch(self, url: URL) -> AbstractContextManager[URL]:
        """A new empty database beside `url`, dropped afterwards (restore drills)."""
        ...

    def recognises(self, head: bytes) -> bool:
        """Whether a dump starting with `head` is this kind's."""
        ...


def parse_dsn(dsn: str) -> tuple[str, URL]:
    """(kind, URL) for postgresql://, mysql:// or mariadb://, or sqlite:///path."""
    try:
        url = make_url(dsn)
    except Exception:
        raise DatabaseError(
            "not a database URL (postgresql://, mariadb:// or sqlite:///path)"
        ) from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        return "postgresql", url
    if backend in ("mysql", "mariadb"):
        return "mariadb", url
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise DatabaseError("a sqlite URL needs a file path: sqlite:////abs/path.db")
        return "sqlite", url
    raise DatabaseError(f"unsupported database {backend!r}: use postgresql, mariadb or sqlite")


def safe_dsn(url: URL) -> str:
    """The URL with its credentials (password, libpq `?password=`) replaced by ***."""
    return mask_url(url.render_as_string(hide_password=False))


def stderr_tail(handle: IO[bytes] | None) -> str:
    if handle is None:
        return ""
    handle.seek(0)
    text = handle.read()[-STDERR_TAIL:].decode(errors="replace").strip()
    return " | ".join(line for line in text.splitlines() if line.strip())


def grow_pipe(fd: int) -> None:
    # A bigger pipe lets the dump tool run ahead while we compress (Linux only).
    with contextlib.suppress(Exception):
        import fcntl

        fcntl.fcntl(fd, 1031, PIPE_SIZE)  # F_SETPIPE_SZ


def tool_version(tool: str) -> str:
    return subprocess.run(
        [tool, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()


def combine(digests: Iterable[bytes]) -> str:
    """An order-independent checksum of row digests: their sum mod 2**64, as 16 hex digits."""
    total = 0
    for digest in digests:
        total += int.from_bytes(digest[:8], "big")
    return f"{total % (1 << 64):016x}"


def row_digest(row: tuple[object, ...]) -> bytes:
    return hashlib.blake2b(repr(row).encode(), digest_size=8).digest()


def feed(process: subprocess.Popen[bytes], data: Iterable[bytes], *, tolerate_close: bool) -> None:
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


def run_restore(
    argv: list[str],
    data: Iterable[bytes],
    env: dict[str, str] | None,
    *,
    failure: type[DatabaseError] = DatabaseError,
) -> None:
    """Pipe `data` into a restore tool; a non-zero exit raises `failure`."""
    name = Path(argv[0]).name
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
        try:
            feed(process, data, tolerate_close=False)
        except BrokenPipeError:
            process.wait()
            raise failure(
                f"{name} stopped reading: {stderr_tail(stderr) or 'no message'}"
            ) from None
        code = process.wait()
        if code != 0:
            raise failure(f"{name} exited with {code}: {stderr_tail(stderr) or 'no message'}")


@contextlib.contextmanager
def spooled(data: Iterable[bytes], *, size: int | None) -> Iterator[Path]:
    """Write `data` whole into a private (0600) temporary file and yield its path; the file is
    removed afterwards. Memory stays bounded; disk holds the dump once ($TMPDIR chooses where).
    Any error while reading `data` (a damaged backup) is raised before the caller sees a byte."""
    directory = tempfile.gettempdir()
    if size is not None:
        free = shutil.disk_usage(directory).free
        if free < size:
            raise DatabaseError(
                f"{directory} has {free // 2**20} MiB free; verifying this backup before the "
                f"restore needs {size // 2**20} MiB (set TMPDIR to a larger disk)"
            )
    fd, name = tempfile.mkstemp(prefix="pilothouse-restore-", suffix=".dump")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            for piece in data:
                handle.write(piece)
        yield path
    finally:
        path.unlink(missing_ok=True)
