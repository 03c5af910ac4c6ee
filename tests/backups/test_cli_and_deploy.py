"""The backup CLI as users run it (real subprocesses), key rotation, and a real deployment
that takes its pre-deployment backup before anything changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pilothouse.setup import ensure_master_key
from tests.backups.conftest import Harness


def cli(harness: Harness, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PILOTHOUSE_DATA_DIR": str(harness.data_dir),
        "PILOTHOUSE_DATABASE_URL": harness.db_url,
        "COLUMNS": "200",
    }
    env.pop("PILOTHOUSE_MASTER_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "pilothouse", *args],
        env=env,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
    )


def test_self_verify_drill_restore_and_key_rotation(
    harness: Harness, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`backup self` dumps the store with the engine it runs on: SQLite or PostgreSQL."""
    first = cli(harness, "backup", "self")
    assert first.returncode == 0, first.stderr
    assert "integrity check passed" in first.stdout
    name = first.stdout.split(" as ", 1)[1].split()[0]
    assert name.startswith("backup_")

    verified = cli(harness, "backup", "verify", name)
    assert verified.returncode == 0 and "integrity check passed" in verified.stdout
    drilled = cli(harness, "backup", "drill", name)
    assert drilled.returncode == 0 and "counts match" in drilled.stdout, drilled.stderr

    if harness.db_url.startswith("sqlite"):
        to = f"sqlite:///{tmp_path / 'copy.db'}"
    else:
        to = request.getfixturevalue("pg_empty")
    done = cli(harness, "backup", "restore", name, "--to", to)
    assert done.returncode == 0 and "restored" in done.stdout, done.stderr
    again = cli(harness, "backup", "restore", name, "--to", to)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: {to} is not empty: pass --clean to replace what it holds"
    ]
    assert "Traceback" not in again.stderr

    old_ids = cli(harness, "keys", "list").stdout.split()
    rotated = cli(harness, "keys", "rotate")
    assert rotated.returncode == 0 and "new current key" in rotated.stdout
    ids = cli(harness, "keys", "list").stdout
    assert old_ids[0] in ids and "(current)" in ids and len(ids.splitlines()) == 2
    # the old backup still verifies; a new one uses the new key
    assert cli(harness, "backup", "verify", name).returncode == 0
    newer = cli(harness, "backup", "self")
    assert newer.returncode == 0
    new_key = rotated.stdout.split()[3]
    backups = [b for b in _backups(harness)]
    assert {b.key_id for b in backups} == {old_ids[0], new_key}


def _backups(harness: Harness) -> list[Any]:
    import sqlalchemy as sa

    from pilothouse.backups.models import Backup

    async def go(ctx: Any) -> list[Any]:
        async with ctx.db.session(write=False) as session:
            return list(await session.scalars(sa.select(Backup)))

    result: list[Any] = harness.call(go)
    return result


def test_cli_errors_are_one_line(harness: Harness) -> None:
    missing = cli(harness, "backup", "verify", "backup_19990101_000000")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: backup 'backup_19990101_000000' not found"
    bad = cli(harness, "backup", "restore", "x", "--to", "ftp://nowhere")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    unknown_target = cli(harness, "backup", "run", "nope")
    assert unknown_target.stderr.strip() == "error: backup target 'nope' not found"


def test_a_deployment_takes_its_backup_before_migrating(
    stack: dict[str, Any], sqlite_source: Path, tmp_path: Path
) -> None:
    ensure_master_key(stack["data_dir"] / "master.key")
    client = stack["client"]
    client.setup_service(versions=("v1.0.0",), replicas=1)
    client.ok(
        "POST",
        "/backup-targets",
        201,
        json={
            "name": "app-db",
            "dsn": f"sqlite:///{sqlite_source}",
            "environment": "dev",
            "before_deploy": True,
            "schedule": None,
        },
    )
    dep = client.wait(client.deploy("web", "v1.0.0")["id"])
    assert dep["status"] == "success", dep
    assert dep["backup_created"] is True and dep["backup_id"]
    backup = client.ok("GET", f"/backups/{dep['backup_id']}")
    assert backup["triggered_by"] == "pre_deployment" and backup["status"] == "completed"
    assert backup["deployment_id"] == dep["id"] and backup["integrity_check_passed"]
    logs = client.ok("GET", f"/deployments/{dep['id']}/logs")["items"]
    assert any(f"pre-deployment backup {dep['backup_id']}" in line["message"] for line in logs)

    # a backup that cannot be taken fails the deployment before anything changes
    sqlite_source.unlink()
    client.ok(
        "POST",
        "/artifacts",
        201,
        json={"service": "web", "version": "v1.1.0", "commit_sha": "b" * 40},
    )
    failed = client.wait(client.deploy("web", "v1.1.0")["id"], {"failed", "rolled_back"})
    assert "pre-deployment backup of app-db failed" in failed["error_message"]
    assert {r["version"] for r in client.replicas("web")} == {"v1.0.0"}
