"""The backups API: validation (422 names the field), conflicts, 404s, roles, queueing, the
pre-deployment hook, and that a DSN's password never leaves the server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pilothouse.backups import jobs
from pilothouse.config import Settings
from pilothouse.core.db import Database
from pilothouse.deployments.models import Deployment
from pilothouse.drivers.base import RolloutFailed
from pilothouse.services.models import Service
from pilothouse.setup import ensure_master_key
from tests.backups.conftest import run
from tests.conftest import Api

PASSWORD = "pw-Zq81-never-shown"


@pytest.fixture(autouse=True)
def _key(settings: Settings) -> None:
    ensure_master_key(settings.master_key_path)


def _body(sqlite_source: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "app-db", "dsn": f"sqlite:///{sqlite_source}", **extra}


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"schedule": "0 2 * *"}, "schedule", "five-field"),
        ({"drill_schedule": "99 * * * *"}, "drill_schedule", "not a valid cron"),
        ({"dsn": "ftp://x/y"}, "dsn", "unsupported database"),
        ({"dsn": "postgresql://u@h:5432"}, "dsn", "must name the database"),
        ({"retention": {"yearly": 3}}, "retention", "unknown class"),
        ({"retention": {"daily": 0}}, "retention", "1-3650"),
        ({"max_retries": 11}, "max_retries", "less than or equal to 10"),
        ({"storage": {"kind": "s3"}}, "storage", "bucket is required"),
        ({"storage": {"kind": "local", "path": "relative"}}, "storage", "absolute"),
        ({"name": "bad name!"}, "name", ""),
    ],
)
def test_validation(
    api: Api, sqlite_source: Path, change: dict[str, Any], field: str, rule: str
) -> None:
    response = api.post("/backup-targets", _body(sqlite_source, **change))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["field"].startswith(field) and rule in d["rule"] for d in detail), detail


def test_crud_conflict_404_and_roles(api: Api, sqlite_source: Path) -> None:
    created = api.ok(api.post("/backup-targets", _body(sqlite_source)), 201)
    assert created["engine"] == "sqlite" and created["schedule"] == "0 2 * * *"
    assert created["drill_schedule"] == "0 4 * * L0"
    assert api.post("/backup-targets", _body(sqlite_source)).status_code == 409
    assert api.get("/backup-targets/nope").status_code == 404
    assert api.get(f"/backups/{uuid.uuid4()}").status_code == 404
    changed = api.ok(api.patch("/backup-targets/app-db", {"schedule": "30 1 * * *"}))
    assert changed["schedule"] == "30 1 * * *"
    operator = api.as_(api.user("olive", "operator"))
    denied = operator.post("/backup-targets", _body(sqlite_source, name="other"))
    assert denied.status_code == 403 and "manage backups" in denied.json()["message"]
    api.ok(api.delete("/backup-targets/app-db"), 204)
    assert api.get("/backup-targets/app-db").status_code == 404
    # the name is free again
    api.ok(api.post("/backup-targets", _body(sqlite_source)), 201)


def test_queue_a_manual_backup(api: Api, sqlite_source: Path, settings: Settings) -> None:
    api.ok(api.post("/backup-targets", _body(sqlite_source)), 201)
    queued = api.ok(api.post("/backup-targets/app-db/backups", {"reason": "before upgrade"}), 202)
    assert queued["status"] == "in_progress" and queued["triggered_by"] == "manual"
    assert queued["backup_type"] == "manual"
    listed = api.ok(api.get("/backups", params={"target": "app-db"}))
    assert [b["id"] for b in listed] == [queued["id"]]
    # what the worker does with it
    ctx = jobs.BackupContext(Database(settings.effective_database_url()), settings.data_dir)

    async def go() -> Any:
        try:
            return await jobs.run_backup(ctx, uuid.UUID(queued["id"]))
        finally:
            await ctx.db.dispose()

    assert run(go()).status == "completed"
    shown = api.ok(api.get(f"/backups/{queued['id']}"))
    assert shown["integrity_check_passed"] is True and shown["checksum_sha256"]
    history = api.ok(api.get(f"/history/backup/{queued['id']}"))
    assert [h["to_status"] for h in history] == ["in_progress", "completed"]


def test_the_password_never_leaves_the_server(
    api: Api, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    dsn = f"postgresql://app:{PASSWORD}@127.0.0.1:5432/app_db"
    unchecked = {"check": "false"}  # no such role: saved without the connection check
    created = api.ok(api.post("/backup-targets", {"name": "pg", "dsn": dsn}, params=unchecked), 201)
    assert created["dsn"] == "postgresql://app:***@127.0.0.1:5432/app_db"
    texts = [
        api.get("/backup-targets").text,
        api.get("/backup-targets/pg").text,
        api.get("/audit").text,
        api.patch("/backup-targets/pg", {"dsn": dsn.replace("app_db", "other")}).text,
        api.post("/backup-targets", {"name": "pg", "dsn": dsn}).text,  # 409
        api.post("/backup-targets", {"name": "x y", "dsn": dsn}).text,  # 422
        api.post("/backup-targets", {"name": "pg2", "dsn": dsn}).text,  # 422: cannot connect
    ]
    captured = capsys.readouterr()
    for text in [*texts, captured.out, captured.err, caplog.text]:
        assert PASSWORD not in text


def test_pre_deployment_hook(
    api: Api, world: dict[str, Any], sqlite_source: Path, settings: Settings, tmp_path: Path
) -> None:
    api.ok(
        api.post(
            "/backup-targets",
            _body(sqlite_source, environment="prod", before_deploy=True, schedule=""),
        ),
        201,
    )
    dep = api.ok(
        api.post("/deployments", {"service": "web", "version": "v1.1.0"}),
        201,
    )
    db = Database(settings.effective_database_url())
    ctx = jobs.BackupContext(db, settings.data_dir)
    hook = jobs.pre_deploy_hook(ctx)

    async def go() -> Any:
        try:
            async with db.session(write=False) as session:
                deployment = await session.get(Deployment, uuid.UUID(dep["id"]))
                svc = await session.get(Service, uuid.UUID(world["service"]["id"]))
            return await hook(deployment, svc)
        finally:
            await db.dispose()

    backup_id = run(go())
    assert backup_id is not None
    backup = api.ok(api.get(f"/backups/{backup_id}"))
    assert backup["triggered_by"] == "pre_deployment" and backup["status"] == "completed"
    assert backup["deployment_id"] == dep["id"]
    assert backup["artifact_id"] == dep["artifact_id"]
    assert backup["gfs_class"] == "daily"

    # a target that cannot be backed up stops the deployment
    api.ok(
        api.post(
            "/backup-targets",
            {
                "name": "broken",
                "dsn": f"sqlite:///{tmp_path}/missing.db",
                "environment": "prod",
                "before_deploy": True,
            },
            params={"check": "false"},
        ),
        201,
    )
    with pytest.raises(RolloutFailed, match="pre-deployment backup of broken failed"):
        run(go())
    failed = api.ok(api.get("/backups", params={"target": "broken"}))
    assert failed[0]["status"] == "failed" and failed[0]["next_attempt_at"] is None
