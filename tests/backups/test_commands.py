"""Database tool command lines (exact argument lists, as Kamal tests its commands) and the pure
rules around them: tool versions and the drill's verdict."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pilothouse.backups.databases import Contents, recognise
from pilothouse.backups.databases.base import combine, row_digest
from pilothouse.backups.databases.commands import (
    mariadb_argv,
    mariadb_dump_argv,
    mariadb_dump_problem,
    pg_dump_argv,
    pg_dump_problem,
    pg_list_argv,
    pg_restore_argv,
    tool_major,
)
from pilothouse.backups.drill import drill_verdict


def test_pg_dump() -> None:
    assert pg_dump_argv("/usr/lib/postgresql/15/bin/pg_dump", "00000003-0000001B-1") == [
        "/usr/lib/postgresql/15/bin/pg_dump",
        "--format=custom",
        "--compress=0",
        "--snapshot=00000003-0000001B-1",
        "--no-password",
    ]


@pytest.mark.parametrize(("clean", "tail"), [(False, []), (True, ["--clean", "--if-exists"])])
def test_pg_restore(clean: bool, tail: list[str]) -> None:
    assert pg_restore_argv("pg_restore", "app", clean=clean) == [
        "pg_restore",
        "--dbname=app",
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        "--single-transaction",
        "--no-password",
        *tail,
    ]
    assert pg_list_argv("pg_restore") == ["pg_restore", "--list"]


def test_mariadb_dump_and_client() -> None:
    assert mariadb_dump_argv("/usr/bin/mariadb-dump", "/tmp/my.cnf", "shop") == [
        "/usr/bin/mariadb-dump",
        "--defaults-extra-file=/tmp/my.cnf",
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "shop",
    ]
    assert mariadb_argv("/usr/bin/mariadb", "/tmp/my.cnf", "shop") == [
        "/usr/bin/mariadb",
        "--defaults-extra-file=/tmp/my.cnf",
        "--binary-mode",
        "shop",
    ]


MARIADB_DUMP_1011 = (
    "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)"
)


@pytest.mark.parametrize(
    ("tool", "server", "problem"),
    [
        (MARIADB_DUMP_1011, "10.11.19-MariaDB-0+deb12u1", None),
        (MARIADB_DUMP_1011, "10.6.12-MariaDB", None),
        (MARIADB_DUMP_1011, "11.4.2-MariaDB", "mariadb-dump 10.11 is older than the server (11.4)"),
        (MARIADB_DUMP_1011, "8.0.36", None),  # MySQL: nothing to judge
        ("mysqldump  Ver 8.0.36 for Linux", "8.0.36", None),
    ],
)
def test_mariadb_dump_version_rule(tool: str, server: str, problem: str | None) -> None:
    found = mariadb_dump_problem(tool, server)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(
    ("tool", "server", "ok"),
    [
        ("pg_dump (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)", 15, True),
        ("pg_dump (PostgreSQL) 16.2", 15, True),
        ("pg_dump (PostgreSQL) 14.11", 15, False),
        ("", 15, False),
    ],
)
def test_pg_dump_version_rule(tool: str, server: int, ok: bool) -> None:
    assert (pg_dump_problem(tool, server) is None) == ok
    assert tool_major("pg_dump (PostgreSQL) 15.8") == 15


def test_recognise_dumps() -> None:
    assert recognise(b"PGDMP\x01\x0e\x00") == "postgresql"
    assert recognise(b"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB") == "mariadb"
    assert recognise(b"-- MySQL dump 10.13") == "mariadb"
    sandbox = b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19-11.4.5-MariaDB"
    assert recognise(sandbox) == "mariadb"
    assert recognise(b"SQLite format 3\x00....") == "sqlite"
    assert recognise(b"hello") is None


def test_combine_is_order_independent_and_sees_duplicates() -> None:
    rows = [row_digest((i, f"r{i}")) for i in range(50)]
    assert combine(rows) == combine(reversed(rows))
    assert combine(rows) != combine(rows[:-1])
    assert combine([*rows, rows[0]]) != combine(rows)
    assert combine([]) == "0" * 16


@pytest.mark.parametrize(
    ("counts", "sums", "restored", "passed", "says"),
    [
        ({"a": 1}, {"a": "01"}, Contents({"a": 1}, {"a": "01"}), True, "content matches"),
        (
            {"a": 1},
            {"a": "01"},
            Contents({"a": 2}, {"a": "01"}),
            False,
            "a: recorded 1, restored 2",
        ),
        ({"a": 1}, {"a": "01"}, Contents({"a": 1}, {"a": "02"}), False, "content differs in a"),
        ({"a": 1, "b": 0}, {"a": "01", "b": "00"}, Contents({"a": 1}, {"a": "01"}), False, "b"),
        ({"a": 1}, None, Contents({"a": 1}, None), True, "no content checksums"),
    ],
)
def test_drill_verdict(
    counts: dict[str, int],
    sums: dict[str, str] | None,
    restored: Contents,
    passed: bool,
    says: str,
) -> None:
    ok, detail = drill_verdict(counts, sums, restored)
    assert ok is passed and says in detail, detail


def test_spooled_is_private_removed_and_bounded_by_disk() -> None:
    import stat

    from pilothouse.backups.databases import DatabaseError
    from pilothouse.backups.databases.base import spooled

    with spooled(iter([b"a" * 10, b"b"]), size=11) as path:
        assert path.read_bytes() == b"a" * 10 + b"b"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.exists()
    with (
        pytest.raises(DatabaseError, match="set TMPDIR to a larger disk"),
        spooled(iter([b"x"]), size=10**18),
    ):
        pass

    def damaged() -> Iterator[bytes]:
        yield b"part"
        raise ValueError("chunk 1 failed authentication")

    with pytest.raises(ValueError, match="chunk 1"), spooled(damaged(), size=None) as never:
        raise AssertionError(f"the caller saw {never}")
