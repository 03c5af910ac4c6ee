"""Real backups of real databases: PostgreSQL (pgbench + varied types), MariaDB and SQLite.
Each one is dumped, compressed, encrypted, stored, verified, drilled and restored, and the
restored data is compared with the source, not only counted."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pilothouse.backups import jobs
from pilothouse.backups.jobs import BackupFailed
from tests.backups.conftest import (
    Harness,
    maria_fingerprint,
    mariadb,
    pg_fingerprint,
)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_postgres_backup_verify_drill_restore(
    harness: Harness, pg_source: str, pg_empty: str
) -> None:
    target = harness.target("pg", pg_source)
    backup = harness.backup(target)
    assert backup.status == "completed", backup.error_message
    assert backup.integrity_check_passed is True
    assert backup.integrity_detail and backup.integrity_detail.startswith("pg_restore --list")
    assert backup.table_counts is not None
    assert backup.table_counts["public.pgbench_accounts"] == 100_000
    assert backup.table_counts["public.varied"] == 3002
    assert backup.dump_tool_version and "pg_dump (PostgreSQL)" in backup.dump_tool_version
    assert backup.encryption_algorithm == "AES-256-GCM" and backup.key_id
    assert backup.size_bytes and backup.stored_bytes and backup.stored_bytes < backup.size_bytes
    assert backup.compression_ratio == pytest.approx(backup.stored_bytes / backup.size_bytes, 1e-3)
    assert backup.gfs_class == "manual" and backup.triggered_by == "manual"
    path = harness.object_path(backup)
    assert path.is_file() and not path.with_name(path.name + ".partial").exists()
    assert _sha256(path) == backup.checksum_sha256
    assert backup.object_key.endswith(f"/{backup.id}.dump.zst.enc")

    drilled = harness.call(jobs.drill_backup, backup.id)
    assert drilled.restore_tested and drilled.restore_test_passed, drilled.restore_test_detail
    assert "counts match" in (drilled.restore_test_detail or "")

    summary = harness.call(jobs.restore_backup, backup.id, pg_empty, actor=jobs.BACKUP_ACTOR)
    assert "restored" in summary
    assert pg_fingerprint(pg_empty) == pg_fingerprint(pg_source)

    with pytest.raises(BackupFailed, match="is not empty: pass --clean"):
        harness.call(jobs.restore_backup, backup.id, pg_empty, actor=jobs.BACKUP_ACTOR)
    harness.call(jobs.restore_backup, backup.id, pg_empty, actor=jobs.BACKUP_ACTOR, clean=True)
    assert pg_fingerprint(pg_empty) == pg_fingerprint(pg_source)


def test_mariadb_backup_verify_drill_restore(harness: Harness, maria_source: str) -> None:
    target = harness.target("maria", maria_source)
    backup = harness.backup(target)
    assert backup.status == "completed", backup.error_message
    assert backup.integrity_check_passed, backup.integrity_detail
    assert backup.table_counts == {"empty_one": 0, "items": 2000}
    assert backup.dump_tool_version and "mariadb-dump" in backup.dump_tool_version.lower()

    drilled = harness.call(jobs.drill_backup, backup.id)
    assert drilled.restore_test_passed, drilled.restore_test_detail

    source_db = maria_source.rsplit("/", 1)[1]
    restored_db = source_db.replace("bk_src_", "bk_dst_")
    mariadb(f"CREATE DATABASE {restored_db}")
    try:
        to = maria_source.rsplit("/", 1)[0] + f"/{restored_db}"
        harness.call(jobs.restore_backup, backup.id, to, actor=jobs.BACKUP_ACTOR)
        assert maria_fingerprint(restored_db) == maria_fingerprint(source_db)
        with pytest.raises(BackupFailed, match="not empty"):
            harness.call(jobs.restore_backup, backup.id, to, actor=jobs.BACKUP_ACTOR)
    finally:
        mariadb(f"DROP DATABASE IF EXISTS {restored_db}")


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM notes ORDER BY id").fetchall()
    finally:
        conn.close()


def test_sqlite_backup_verify_drill_restore(
    harness: Harness, sqlite_source: Path, tmp_path: Path
) -> None:
    target = harness.target("lite", f"sqlite:///{sqlite_source}")
    backup = harness.backup(target)
    assert backup.status == "completed", backup.error_message
    assert backup.integrity_check_passed, backup.integrity_detail
    assert backup.table_counts == {"empty_one": 0, "notes": 4000}
    drilled = harness.call(jobs.drill_backup, backup.id)
    assert drilled.restore_test_passed, drilled.restore_test_detail
    restored = tmp_path / "restored.db"
    harness.call(jobs.restore_backup, backup.id, f"sqlite:///{restored}", actor=jobs.BACKUP_ACTOR)
    assert _rows(restored) == _rows(sqlite_source)


def test_failed_dump_is_failed_with_a_retry_and_no_object(harness: Harness, tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    target = harness.target("gone", f"sqlite:///{missing}", retry_delay_seconds=300)
    backup = harness.backup(target)
    assert backup.status == "failed"
    assert "does not exist" in (backup.error_message or "")
    assert backup.next_attempt_at is not None  # 1 of 3 retries scheduled
    assert backup.integrity_check_passed is None
    assert not list((harness.data_dir / "backups").rglob("*.enc"))


def test_pg_dump_of_a_missing_database_fails_cleanly(harness: Harness, pg_source: str) -> None:
    target = harness.target("pg-missing", pg_source.rsplit("/", 1)[0] + "/no_such_db_xyz")
    backup = harness.backup(target)
    assert backup.status == "failed"
    assert "no_such_db_xyz" in (backup.error_message or "")
    assert not list((harness.data_dir / "backups").rglob("*.enc"))


def test_a_final_failure_and_a_failed_check_are_alerted(
    harness: Harness, sqlite_source: Path, tmp_path: Path
) -> None:
    """The real webhook channel receives a signed message for each."""
    from pilothouse.alerts import service as alerts
    from tests.healthchecks.test_monitor import SECRET, Receiver

    receiver = Receiver()

    async def add(ctx: jobs.BackupContext) -> None:
        async with ctx.db.session() as session:
            admin = await _admin(session)
            await alerts.add_channel(
                session,
                admin,
                ctx.keyring(),
                name="ops",
                kind="webhook",
                config={"url": receiver.url, "secret": SECRET},
            )

    harness.call(add)
    gone = harness.target("gone", f"sqlite:///{tmp_path}/missing.db", max_retries=0)
    failed = harness.backup(gone)
    assert failed.status == "failed" and failed.next_attempt_at is None
    good = harness.target("lite", f"sqlite:///{sqlite_source}")
    backup = harness.backup(good)
    path = harness.object_path(backup)
    data = path.read_bytes()
    path.write_bytes(data[:-10] + bytes(b ^ 1 for b in data[-10:]))
    harness.call(jobs.verify_backup, backup.id)
    events = [m["event"] for m in receiver.messages]
    assert events == ["backup_failed", "backup_integrity_failed"], receiver.messages
    assert "backup of gone failed after 1 attempt(s)" in receiver.messages[0]["text"]
    assert receiver.bad_signatures == 0


async def _admin(session: Any) -> Any:
    import sqlalchemy as sa

    from pilothouse.access import Principal
    from pilothouse.users import service as users
    from pilothouse.users.models import User

    user = await session.scalar(sa.select(User).where(User.role == "admin").limit(1))
    if user is None:
        user, _ = await users.bootstrap_admin(session, "ops-admin")
    return Principal(id=user.id, name=user.name, role="admin")
