"""Registering targets: an empty schedule means no schedule (API and CLI), and a target's
connection and dump tool are checked before it is saved (unless told not to)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pilothouse.backups import jobs
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.setup import ensure_master_key
from tests.backups.conftest import run
from tests.conftest import Api, LiveServer
from tests.test_cli import Cli


@pytest.fixture(autouse=True)
def _key(settings: Settings) -> None:
    ensure_master_key(settings.master_key_path)


def _due(settings: Settings, when: timedelta) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """What the worker would start `when` from now: (scheduled backups, drills)."""
    ctx = jobs.BackupContext(Database(settings.effective_database_url()), settings.data_dir)

    async def go() -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        try:
            now = utcnow() + when
            targets = await jobs.enabled_targets(ctx)
            return await jobs.schedule_due(ctx, now, targets), await jobs.drills_due(
                ctx, now, targets
            )
        finally:
            await ctx.db.dispose()

    return run(go())


@pytest.mark.parametrize("empty", [None, ""])
def test_an_empty_schedule_registers_nothing(
    api: Api, sqlite_source: Path, settings: Settings, empty: Any
) -> None:
    body = {
        "name": "quiet",
        "dsn": f"sqlite:///{sqlite_source}",
        "schedule": empty,
        "drill_schedule": empty,
    }
    created = api.ok(api.post("/backup-targets", body), 201)
    assert created["schedule"] is None and created["drill_schedule"] is None
    assert api.ok(api.get("/backup-targets/quiet"))["schedule"] is None
    # a completed backup exists, so a drill would have something to drill
    queued = api.ok(api.post("/backup-targets/quiet/backups", {}), 202)
    ctx = jobs.BackupContext(Database(settings.effective_database_url()), settings.data_dir)

    async def take() -> Any:
        try:
            return await jobs.run_backup(ctx, uuid.UUID(queued["id"]))
        finally:
            await ctx.db.dispose()

    assert run(take()).status == "completed"
    for days in (1, 2, 40):
        assert _due(settings, timedelta(days=days)) == ([], [])
    # the defaults still apply when the fields are left out
    default = {"name": "daily", "dsn": f"sqlite:///{sqlite_source}"}
    created = api.ok(api.post("/backup-targets", default), 201)
    assert created["schedule"] == "0 2 * * *" and created["drill_schedule"] == "0 4 * * L0"


def test_the_connection_is_checked_before_saving(api: Api, tmp_path: Path) -> None:
    missing = {"name": "gone", "dsn": f"sqlite:///{tmp_path}/missing.db"}
    refused = api.post("/backup-targets", missing)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert detail[0]["field"] == "dsn" and "does not exist" in detail[0]["rule"], detail
    assert api.get("/backup-targets/gone").status_code == 404
    unreachable = {"name": "pg", "dsn": "postgresql://app:pw-Zq81@127.0.0.1:1/app"}
    refused = api.post("/backup-targets", unreachable)
    assert refused.status_code == 422 and "cannot connect" in refused.text
    assert "pw-Zq81" not in refused.text
    # ?check=false saves it anyway
    saved = api.ok(api.post("/backup-targets", missing, params={"check": "false"}), 201)
    assert saved["name"] == "gone"
    # a new DSN is checked the same way
    moved = {"dsn": f"sqlite:///{tmp_path}/elsewhere.db"}
    refused = api.patch("/backup-targets/gone", moved)
    assert refused.status_code == 422 and "does not exist" in refused.text
    api.ok(api.patch("/backup-targets/gone", moved, params={"check": "false"}))


def test_postgres_and_mariadb_targets_pass_the_check(
    api: Api, pg_source: str, maria_source: str
) -> None:
    api.ok(api.post("/backup-targets", {"name": "pg", "dsn": pg_source}), 201)
    api.ok(api.post("/backup-targets", {"name": "maria", "dsn": maria_source}), 201)
    wrong_db = maria_source.rsplit("/", 1)[0] + "/no_such_db_xyz"
    refused = api.post("/backup-targets", {"name": "maria2", "dsn": wrong_db})
    assert refused.status_code == 422 and "no_such_db_xyz" in refused.text, refused.text


def test_cli_schedule_empty_and_no_check(
    live_server: LiveServer, admin_token: str, tmp_path: Path, sqlite_source: Path
) -> None:
    cli = Cli(live_server.url, admin_token, tmp_path)
    added = cli.run(
        "backup",
        "target",
        "add",
        "quiet",
        "--dsn",
        f"sqlite:///{sqlite_source}",
        "--schedule",
        "",
        "--drill-schedule",
        "",
    )
    assert "schedule none" in added.stdout and "drill none" in added.stdout, added.stdout
    shown = cli.json("backup", "target", "show", "quiet")
    assert shown["schedule"] is None and shown["drill_schedule"] is None
    missing = f"sqlite:///{tmp_path}/missing.db"
    failed = cli.run("backup", "target", "add", "gone", "--dsn", missing, ok=False)
    assert "does not exist" in failed.stderr and "--no-check" in failed.stderr
    cli.run("backup", "target", "add", "gone", "--dsn", missing, "--no-check")
    assert cli.json("backup", "target", "show", "gone")["name"] == "gone"
