"""A backup killed mid-stream never ends up completed and leaves no object; S3 storage through
moto's server; the worker runs a scheduled backup, its check and a drill unattended; cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import sqlalchemy as sa

from pilothouse.backups import jobs
from pilothouse.backups.storage import S3Storage
from pilothouse.core.clock import utcnow
from tests.backups.conftest import Harness, _pgbench, drop_pg, need_pg
from tests.conftest import PG_ADMIN_URL, free_port, one_store


@pytest.fixture
def pg_big() -> Iterator[str]:
    """pgbench at scale 5 (about 65 MB of dump): long enough to be killed mid-stream."""
    need_pg()
    name = f"bk_big_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    admin = sa.engine.make_url(PG_ADMIN_URL)
    subprocess.run(
        [
            _pgbench(),
            "-i",
            "-s",
            "5",
            "-q",
            "-h",
            admin.host or "127.0.0.1",
            "-U",
            admin.username or "postgres",
            name,
        ],
        check=True,
        capture_output=True,
    )
    yield str(admin.set(database=name))
    drop_pg(name)


def test_kill_9_mid_stream_never_completes(harness: Harness, pg_big: str, tmp_path: Path) -> None:
    target = harness.target("big", pg_big)
    env = {
        **os.environ,
        "PILOTHOUSE_DATA_DIR": str(harness.data_dir),
        "PILOTHOUSE_DATABASE_URL": harness.db_url,
        "PILOTHOUSE_LEASE_SECONDS": "2",
    }
    cli = subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "backup", "run", "big"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = harness.data_dir / "backups"
    killed_mid_stream = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and cli.poll() is None:
        partial = [p for p in root.rglob("*.partial")] if root.exists() else []
        dumpers = [
            c for c in psutil.Process(cli.pid).children(recursive=True) if "pg_dump" in c.name()
        ]
        if partial and dumpers:
            os.kill(cli.pid, signal.SIGKILL)
            killed_mid_stream = True
            break
        time.sleep(0.005)
    cli.wait()
    assert killed_mid_stream, "the backup finished before it could be killed"
    for child in psutil.process_iter(["name"]):
        if child.info["name"] == "pg_dump" and child.ppid() == cli.pid:
            child.kill()

    backups = [b for b in _all(harness) if b.target_id == target]
    assert len(backups) == 1 and backups[0].status == "in_progress"
    assert not list(root.rglob("*.enc")), "no finished object may exist"
    time.sleep(2.5)  # the lease lapses
    reconciled = harness.call(jobs.reconcile_interrupted)
    assert reconciled == [backups[0].id]
    after = harness.get(backups[0].id)
    assert after.status == "failed" and "interrupted" in (after.error_message or "")
    assert after.next_attempt_at is not None
    assert not list(root.rglob("*.partial")) and not list(root.rglob("*.enc"))

    # the retry runs and succeeds, on the same record
    retried = harness.call(jobs.retry_due, after.next_attempt_at + timedelta(seconds=1))
    assert retried == [after.id]
    done = harness.call(jobs.run_backup, after.id)
    assert done.status == "completed" and done.retry_count == 1 and done.integrity_check_passed


def _all(harness: Harness) -> list[Any]:
    from pilothouse.backups.models import Backup

    async def go(ctx: jobs.BackupContext) -> list[Any]:
        async with ctx.db.session(write=False) as session:
            return list(await session.scalars(sa.select(Backup)))

    result: list[Any] = harness.call(go)
    return result


# -- S3 through moto --------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    import httpx

    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(endpoint, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    S3Storage("backups", endpoint_url=endpoint).client.create_bucket(Bucket="backups")
    yield endpoint
    server.terminate()
    server.wait()


def test_s3_backup_restore_and_orphans(
    harness: Harness, sqlite_source: Path, s3: str, tmp_path: Path
) -> None:
    storage_cfg = {"kind": "s3", "bucket": "backups", "prefix": "team-a", "endpoint_url": s3}
    target = harness.target("lite", f"sqlite:///{sqlite_source}", storage=storage_cfg)
    backup = harness.backup(target)
    assert backup.status == "completed" and backup.integrity_check_passed, backup.integrity_detail
    assert backup.storage_location.startswith("s3://backups/team-a/unassigned/")
    storage = S3Storage("backups", prefix="team-a", endpoint_url=s3)
    assert storage.exists(backup.object_key)
    assert storage.size(backup.object_key) == backup.stored_bytes
    keys = [o["Key"] for o in storage.client.list_objects_v2(Bucket="backups")["Contents"]]
    assert keys == [f"team-a/{backup.object_key}"]

    restored = tmp_path / "restored.db"
    harness.call(jobs.restore_backup, backup.id, f"sqlite:///{restored}", actor=jobs.BACKUP_ACTOR)
    assert restored.read_bytes()[:16] == b"SQLite format 3\x00"
    assert harness.call(jobs.drill_backup, backup.id).restore_test_passed

    # an upload that never completes is invisible, and cleanup aborts it
    writer = storage.open_writer("unassigned/orphan.dump.zst.enc")
    writer.write(b"x" * 100)
    assert not storage.exists("unassigned/orphan.dump.zst.enc")
    assert [s.key for s in storage.staged()] == ["unassigned/orphan.dump.zst.enc"]
    figures = harness.call(jobs.cleanup, now=utcnow() + timedelta(minutes=10))
    assert figures["orphans"] == 1 and not storage.staged()
    assert storage.exists(backup.object_key)  # not expired, so kept


def test_cleanup_expires_objects_then_records(harness: Harness, sqlite_source: Path) -> None:
    target = harness.target("lite", f"sqlite:///{sqlite_source}", retention={"manual": 1})
    old, kept = harness.backup(target), harness.backup(target)
    figures = harness.call(jobs.cleanup, now=old.retention_expires_at + timedelta(seconds=1))
    assert figures == {"expired": 2, "orphans": 0, "errors": 0}
    for b in (old, kept):
        row = harness.get(b.id)
        assert row.status == "expired" and row.deleted_at is not None
        assert not harness.object_path(b).exists()
    figures = harness.call(jobs.cleanup, now=utcnow())
    assert figures["expired"] == 0


# -- unattended: the worker schedules, verifies and drills ------------------------------------


@one_store
def test_worker_runs_a_scheduled_backup_its_check_and_a_drill(
    stack: dict[str, Any], db_url: str, pg_source: str
) -> None:
    from pilothouse.setup import ensure_master_key

    ensure_master_key(stack["data_dir"] / "master.key")
    client = stack["client"]
    target = client.ok(
        "POST",
        "/backup-targets",
        201,
        json={
            "name": "prod-db",
            "dsn": pg_source,
            "schedule": "0 2 * * *",
            "drill_schedule": "0 * * * *",
        },
    )
    # The target was registered two days ago: the worker owes it today's 02:00 backup (or
    # yesterday's, before 02:00) and this hour's drill.
    engine = sa.create_engine(
        sa.engine.make_url(db_url).set(
            drivername="postgresql+psycopg" if db_url.startswith("postgresql") else "sqlite"
        )
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE backup_targets SET created_at = :at WHERE name = 'prod-db'"),
            {"at": utcnow() - timedelta(days=2)},
        )
    engine.dispose()
    deadline = time.monotonic() + 90
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rows = client.ok("GET", "/backups", params={"target": target["id"]})
        if rows and rows[0]["restore_tested"]:
            row = rows[0]
            break
        time.sleep(0.5)
    assert row, f"no drilled backup after 90 s: {rows}"
    assert row["triggered_by"] == "scheduled" and row["status"] == "completed"
    assert row["integrity_check_passed"] is True
    assert row["restore_test_passed"] is True, row["restore_test_detail"]
    assert row["gfs_class"] == "monthly" and row["is_monthly_archive"] is True
    assert len(rows) == 1  # once per slot
