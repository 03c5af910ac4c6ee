"""The databases pilothouse backs up, one class per kind behind `SourceDatabase`:
`PostgreSQL`, `MariaDB` (and MySQL), `SQLite`. Command lines are built by the pure functions
in `commands.py`; running them, counting rows and checksumming content happen in each class."""

from __future__ import annotations

from pilothouse.backups.databases.base import (
    Contents,
    DatabaseError,
    Dump,
    PartialRestore,
    SourceDatabase,
    parse_dsn,
    safe_dsn,
)
from pilothouse.backups.databases.mariadb import MariaDB
from pilothouse.backups.databases.postgresql import PostgreSQL
from pilothouse.backups.databases.sqlite import SQLite

KINDS: dict[str, SourceDatabase] = {db.kind: db for db in (PostgreSQL(), MariaDB(), SQLite())}


def database(kind: str) -> SourceDatabase:
    """The database class for a kind recorded on a target or a backup."""
    try:
        return KINDS[kind]
    except KeyError:
        raise DatabaseError(f"unknown database kind {kind!r}") from None


def recognise(head: bytes) -> str | None:
    """The kind of a plain dump from its first bytes, or None."""
    for kind, db in KINDS.items():
        if db.recognises(head):
            return kind
    return None


__all__ = [
    "KINDS",
    "Contents",
    "DatabaseError",
    "Dump",
    "MariaDB",
    "PartialRestore",
    "PostgreSQL",
    "SQLite",
    "SourceDatabase",
    "database",
    "parse_dsn",
    "recognise",
    "safe_dsn",
]
