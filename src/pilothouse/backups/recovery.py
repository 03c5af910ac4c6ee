"""Restores, including disaster recovery: a backup object and the key file are enough.

`restore_object` needs no server, no store and no data directory: it authenticates every chunk
of the object (and its SHA-256, when given), recognises the dump inside, and either restores it
into a database or writes the plain dump to a file. Nothing reaches the target before it is
known to be good where the target cannot roll back (MariaDB, a file); PostgreSQL restores in
one transaction and SQLite beside the target, as in `jobs.restore_backup`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy.engine import URL

from pilothouse.backups.databases import (
    DatabaseError,
    PartialRestore,
    database,
    parse_dsn,
    recognise,
    safe_dsn,
)
from pilothouse.backups.databases.sqlite import write_beside
from pilothouse.backups.pipeline import BackupDamaged, Progress, read_backup
from pilothouse.backups.storage import StorageError
from pilothouse.core.crypto import CryptoError, Keyring
from pilothouse.errors import PilothouseError

READ_SIZE = 1024 * 1024


class BackupFailed(PilothouseError):
    status = 409
    code = "backup_failed"


def describe(exc: BaseException) -> str:
    """One line for an error, safe to store and show (no DSN password ever reaches here)."""
    if isinstance(exc, (DatabaseError, BackupDamaged, StorageError, CryptoError, PilothouseError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def restore_into(
    kind: str, url: URL, data: Iterable[bytes], *, clean: bool, size: int | None
) -> None:
    """Refuse a target that holds tables (unless `clean`), then restore `data` into it."""
    db = database(kind)
    if not clean and not db.is_empty(url):
        raise BackupFailed(f"{safe_dsn(url)} is not empty: pass --clean to replace what it holds")
    db.restore(url, data, clean=clean, size=size)


def restore_failure(exc: BaseException) -> str:
    """Why a restore failed, and whether its target was touched."""
    if isinstance(exc, PartialRestore):
        return f"{exc}; the target was changed and may hold part of the backup"
    return f"{describe(exc)}; the target was not touched"


def _file_chunks(path: Path) -> Iterator[bytes]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise BackupFailed(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        while chunk := handle.read(READ_SIZE):
            yield chunk


def restore_object(
    obj: Path,
    keyring: Keyring,
    *,
    to: str | None = None,
    to_file: Path | None = None,
    clean: bool = False,
    checksum: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Restore a backup object into the database at `to`, or write its plain dump to `to_file`
    (renamed into place only once the whole object checked out). Returns a one-line summary;
    raises BackupFailed saying what went wrong and whether the target was touched."""
    if (to is None) == (to_file is None):
        raise BackupFailed("give one of --to DSN or --to-file PATH")
    url: URL | None = None
    if to is not None:
        try:
            want, url = parse_dsn(to)
        except DatabaseError as exc:
            raise BackupFailed(f"--to: {exc}") from None
    if to_file is not None and to_file.exists() and not clean:
        raise BackupFailed(f"{to_file} exists: pass --clean to replace it")
    try:
        plain = read_backup(_file_chunks(obj), keyring, checksum=checksum, progress=progress)
        head = next(plain, b"")
        kind = recognise(head)
        if kind is None:
            raise BackupFailed(f"{obj} decrypts, but holds no dump pilothouse recognises")
        data = itertools.chain([head], plain)
        if to_file is not None:
            written = [0]

            def counted() -> Iterator[bytes]:
                for piece in data:
                    written[0] += len(piece)
                    yield piece

            write_beside(to_file, counted(), mode=0o600)
            return (
                f"wrote the verified {kind} dump of {obj.name} to {to_file} ({written[0]:,} bytes)"
            )
        assert url is not None
        if want != kind:
            raise BackupFailed(f"{obj.name} holds a {kind} dump; --to is {want}")
        restore_into(kind, url, data, clean=clean, size=None)
    except BackupFailed:
        raise
    except Exception as exc:
        raise BackupFailed(f"restore of {obj.name} failed: {restore_failure(exc)}") from None
    return f"restored {obj.name} ({kind}) into {safe_dsn(url)}"
