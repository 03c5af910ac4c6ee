"""Every kind of damage to a stored backup is caught, by the integrity check and by a restore,
and a restore that fails leaves its target as it was."""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path

import pytest

from pilothouse.backups import jobs
from pilothouse.backups.jobs import BackupFailed
from pilothouse.core.crypto import HEADER, LENGTH
from tests.backups.conftest import Harness


@pytest.fixture
def big_sqlite(tmp_path: Path) -> Path:
    """About 10 MB of incompressible rows: the object spans three 4 MiB chunks."""
    path = tmp_path / "big.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    conn.executemany(
        "INSERT INTO blobs (data) VALUES (?)", [(os.urandom(4096),) for _ in range(2500)]
    )
    conn.commit()
    conn.close()
    return path


def _records(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each chunk record after the header."""
    spans, at = [], HEADER.size
    while at < len(data):
        (length,) = LENGTH.unpack_from(data, at)
        spans.append((at, LENGTH.size + length))
        at += LENGTH.size + length
    return spans


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


def _truncate(data: bytes) -> bytes:
    return data[: len(data) - 1000]


def _drop_final(data: bytes) -> bytes:
    last = _records(data)[-1]
    return data[: last[0]]


def _swap(data: bytes) -> bytes:
    spans = _records(data)
    assert len(spans) >= 3, "the fixture must span several chunks"
    (a, la), (b, lb) = spans[0], spans[1]
    assert la == lb
    return data[:a] + data[b : b + lb] + data[a : a + la] + data[b + lb :]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_flip, "failed authentication"),
        (_truncate, "truncated"),
        (_drop_final, "truncated"),
        (_swap, "chunk 0 failed authentication"),
    ],
)
def test_damage_is_detected(
    harness: Harness, big_sqlite: Path, tmp_path: Path, damage: object, message: str
) -> None:
    target = harness.target("big", f"sqlite:///{big_sqlite}")
    backup = harness.backup(target)
    assert backup.status == "completed" and backup.integrity_check_passed
    path = harness.object_path(backup)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]

    checked = harness.call(jobs.verify_backup, backup.id)
    assert checked.integrity_check_passed is False
    assert message in (checked.integrity_detail or "")

    restored = tmp_path / "restored.db"
    with pytest.raises(BackupFailed, match=message):
        harness.call(
            jobs.restore_backup, backup.id, f"sqlite:///{restored}", actor=jobs.BACKUP_ACTOR
        )
    assert not restored.exists()
    assert not [p for p in tmp_path.iterdir() if ".restoring-" in p.name]

    drilled = harness.call(jobs.drill_backup, backup.id)
    assert drilled.restore_tested and drilled.restore_test_passed is False
    assert message in (drilled.restore_test_detail or "")


def test_a_wrong_key_is_named(harness: Harness, big_sqlite: Path, tmp_path: Path) -> None:
    target = harness.target("big", f"sqlite:///{big_sqlite}")
    backup = harness.backup(target)
    key_file = harness.data_dir / "master.key"
    original = key_file.read_text()
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    try:
        checked = harness.call(jobs.verify_backup, backup.id)
        assert checked.integrity_check_passed is False
        assert f"encrypted with key {backup.key_id}" in (checked.integrity_detail or "")
        assert "not in this keyring" in (checked.integrity_detail or "")
    finally:
        key_file.write_text(original)


def test_another_valid_object_fails_the_checksum(harness: Harness, big_sqlite: Path) -> None:
    target = harness.target("big", f"sqlite:///{big_sqlite}")
    first, second = harness.backup(target), harness.backup(target)
    harness.object_path(first).write_bytes(harness.object_path(second).read_bytes())
    checked = harness.call(jobs.verify_backup, first.id)
    assert checked.integrity_check_passed is False
    assert "checksum mismatch" in (checked.integrity_detail or "")


def test_a_missing_object_is_reported(harness: Harness, big_sqlite: Path) -> None:
    target = harness.target("big", f"sqlite:///{big_sqlite}")
    backup = harness.backup(target)
    harness.object_path(backup).unlink()
    checked = harness.call(jobs.verify_backup, backup.id)
    assert checked.integrity_check_passed is False
    assert "is missing" in (checked.integrity_detail or "")


def test_a_damaged_postgres_restore_leaves_the_target_untouched(
    harness: Harness, pg_source: str, pg_empty: str
) -> None:
    """pg_restore runs in one transaction and is killed before it can commit."""
    import psycopg

    target = harness.target("pg", pg_source)
    backup = harness.backup(target)
    path = harness.object_path(backup)
    data = path.read_bytes()
    # damage the last chunk: everything before it reaches pg_restore first
    path.write_bytes(data[:-20] + bytes(b ^ 0xFF for b in data[-20:]))
    with pytest.raises(BackupFailed, match="failed authentication"):
        harness.call(jobs.restore_backup, backup.id, pg_empty, actor=jobs.BACKUP_ACTOR)
    with psycopg.connect(pg_empty) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone()[0] == 0


# -- MariaDB: the `mariadb` client is not transactional, so nothing reaches it unverified -------


@pytest.fixture
def maria_big(maria_source: str) -> str:
    """The MariaDB source plus ~6 MB of random bytes: the object spans two 4 MiB chunks."""
    from tests.backups.conftest import mariadb

    mariadb(
        "CREATE TABLE noise (id INT PRIMARY KEY, data LONGBLOB);"
        "INSERT INTO noise SELECT seq, CONCAT(RANDOM_BYTES(1024), RANDOM_BYTES(1024), "
        "RANDOM_BYTES(1024), RANDOM_BYTES(1024)) FROM seq_1_to_1500;",
        maria_source.rsplit("/", 1)[1],
    )
    return maria_source


def _zero_length_chunk(data: bytes) -> bytes:
    spans = _records(data)
    assert len(spans) >= 2, "the fixture must span several chunks"
    at = spans[1][0]
    return data[:at] + LENGTH.pack(0) + data[at:]


def _garbage(data: bytes) -> bytes:
    return data + os.urandom(200)


@pytest.mark.parametrize("clean", [False, True])
@pytest.mark.parametrize("damage", ["older object", "garbage appended", "zero-length chunk"])
def test_a_damaged_mariadb_restore_never_touches_the_target(
    harness: Harness, maria_big: str, damage: str, clean: bool
) -> None:
    from tests.backups.conftest import maria_fingerprint, mariadb

    source_db = maria_big.rsplit("/", 1)[1]
    target = harness.target("maria", maria_big)
    older = harness.backup(target)
    mariadb("INSERT INTO items (body) VALUES ('added after the first backup')", source_db)
    backup = harness.backup(target)
    assert older.status == backup.status == "completed", backup.error_message
    path = harness.object_path(backup)
    if damage == "older object":
        path.write_bytes(harness.object_path(older).read_bytes())
    elif damage == "garbage appended":
        path.write_bytes(_garbage(path.read_bytes()))
    else:
        path.write_bytes(_zero_length_chunk(path.read_bytes()))

    restored_db = source_db.replace("bk_src_", "bk_dmg_")
    mariadb(f"CREATE DATABASE {restored_db}")
    try:
        if clean:  # the target holds something the failed restore must not destroy
            mariadb(
                "CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, blob_col BLOB, doc JSON, "
                "body LONGTEXT, at DATETIME(6), price DECIMAL(10,2));"
                "INSERT INTO items (body) VALUES ('precious');",
                restored_db,
            )
        before = maria_fingerprint(restored_db) if clean else ""
        to = maria_big.rsplit("/", 1)[0] + f"/{restored_db}"
        with pytest.raises(BackupFailed) as failed:
            harness.call(jobs.restore_backup, backup.id, to, actor=jobs.BACKUP_ACTOR, clean=clean)
        tables = mariadb("SHOW TABLES", restored_db).split()
        if clean:
            assert tables == ["items"] and maria_fingerprint(restored_db) == before
        else:
            assert tables == []
        assert "the target was not touched" in str(failed.value)
    finally:
        mariadb(f"DROP DATABASE IF EXISTS {restored_db}")
