"""Issue 13.2, rollback with data, end to end: `pilothouse serve` with its worker, the CLI as a
subprocess, a real PostgreSQL application database, real pg_dump/pg_restore. A release whose
migration adds a column is deployed (its pre-deployment backup taken first), rows are written,
and `rollback --with-data` puts the database back as it was before that deploy. A restore that
fails leaves the rollback failed with the reason and the data and the release as they were;
without the flag the rollback says which backup could restore the data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from pilothouse.setup import ensure_master_key
from tests.backups.conftest import drop_pg, need_pg, pg_fingerprint
from tests.conftest import PG_ADMIN_URL, one_store
from tests.test_cli import Cli


@pytest.fixture
def app_db() -> Iterator[str]:
    """The application's own PostgreSQL database: one table, three rows."""
    need_pg()
    name = f"wd_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO items (name) VALUES ('one'), ('two'), ('three')")
    yield url
    drop_pg(name)


def migration(url: str) -> str:
    """v2.0.0's migration adds a column (v1.0.0's has nothing to do); the last line names it."""
    alter = "ALTER TABLE items ADD COLUMN note text NOT NULL DEFAULT 'v2'"
    return (
        f'if [ "$PILOTHOUSE_VERSION" = v2.0.0 ]; then '
        f'psql -v ON_ERROR_STOP=1 -q "{url}" -c "{alter}" || exit 1; fi; echo 0002_items_note'
    )


def columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'items' "
            "ORDER BY ordinal_position"
        )
        return [r[0] for r in rows]


def setup(stack: dict[str, Any], app_url: str) -> Any:
    ensure_master_key(stack["data_dir"] / "master.key")
    client = stack["client"]
    client.setup_service(
        replicas=1,
        versions=("v1.0.0", "v2.0.0"),
        driver_config={"migration_command": migration(app_url)},
    )
    client.ok(
        "POST",
        "/backup-targets",
        201,
        json={
            "name": "app-db",
            "dsn": app_url,
            "environment": "dev",
            "before_deploy": True,
            "schedule": None,
        },
    )
    return client


def deploy(client: Any, version: str) -> dict[str, Any]:
    dep = client.wait(client.deploy("web", version)["id"])
    assert dep["status"] == "success", dep
    return dep  # type: ignore[no-any-return]


def run(cli: Cli, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pilothouse", *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        input=input,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


@one_store
def test_rollback_with_data_puts_the_database_back_as_before_the_deploy(
    stack: dict[str, Any], app_db: str, tmp_path: Path
) -> None:
    client = setup(stack, app_db)
    deploy(client, "v1.0.0")
    before = pg_fingerprint(app_db)
    v2 = deploy(client, "v2.0.0")
    assert v2["migration_applied"] is True and v2["migration_version"] == "0002_items_note"
    assert v2["backup_created"] is True
    assert columns(app_db) == ["id", "name", "note"]
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute("INSERT INTO items (name, note) VALUES ('four', 'new'), ('five', 'new')")
    after_writes = pg_fingerprint(app_db)
    backup = client.ok("GET", f"/backups/{v2['backup_id']}")
    cli = Cli(stack["server"].url, stack["token"], tmp_path)

    # What a rollback would do, without recording anything.
    preview = client.ok("GET", "/services/web/rollback")
    assert (preview["from_version"], preview["to_version"]) == ("v2.0.0", "v1.0.0")
    offered = preview["data_restore"]
    assert offered["available"] and offered["from_version"] == "v2.0.0"
    assert [b["id"] for b in offered["backups"]] == [v2["backup_id"]]

    # Asked, and answered no: nothing is recorded.
    declined = run(cli, "rollback", "web", "--with-data", input="n\n")
    assert declined.returncode == 1
    assert backup["name"] in declined.stdout and "is replaced" in declined.stdout
    assert declined.stderr.strip().endswith(
        "error: nothing done (pass --yes to confirm without a prompt)"
    ), declined.stderr
    assert not [
        d
        for d in client.ok("GET", "/deployments", params={"service": "web"})["items"]
        if d["event_type"] == "rollback"
    ]

    # The backup object is gone: the restore fails before touching anything, the rollback is
    # failed with the reason, and v2.0.0 stays live on its data.
    (obj,) = [p for p in (stack["data_dir"] / "backups").rglob(f"*{backup['id']}*") if p.is_file()]
    aside = tmp_path / "aside"
    shutil.move(obj, aside)
    failed = run(cli, "rollback", "web", "--with-data", "--yes")
    assert failed.returncode == 1, failed.stdout
    rollback_id = failed.stdout.split("rollback ", 1)[1].split()[0]
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: deployment {rollback_id} failed: data restore failed: "), error
    assert "the target was not touched" in error, error
    bad = client.ok("GET", f"/deployments/{rollback_id}")
    assert bad["status"] == "failed" and bad["data_restored_at"] is None
    assert bad["restore_backup_ids"] == [v2["backup_id"]]
    assert "data restore failed" in bad["error_message"]
    assert pg_fingerprint(app_db) == after_writes and columns(app_db) == ["id", "name", "note"]
    assert {r["version"] for r in client.replicas("web")} == {"v2.0.0"}

    # With the object back: restored, then rolled out.
    shutil.move(aside, obj)
    done = run(cli, "rollback", "web", "--with-data", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"restored {backup['name']} into " in done.stdout, done.stdout
    rollback_id = done.stdout.split("rollback ", 1)[1].split()[0]
    assert columns(app_db) == ["id", "name"]
    assert pg_fingerprint(app_db) == before
    assert {r["version"] for r in client.replicas("web")} == {"v1.0.0"}

    record = client.ok("GET", f"/deployments/{rollback_id}")
    assert record["status"] == "success" and record["event_type"] == "rollback"
    assert record["restore_backup_ids"] == [v2["backup_id"]] and record["data_restored_at"]
    assert client.ok("GET", f"/deployments/{v2['id']}")["status"] == "rolled_back"
    trail = client.ok("GET", "/audit", params={"entity_id": rollback_id})
    actions = {entry["action"]: entry for entry in trail}
    assert actions["request_data_restore"]["changes"]["backups"] == [v2["backup_id"]]
    assert actions["restore_data"]["changes"]["names"] == [backup["name"]]
    restores = client.ok("GET", "/audit", params={"entity_id": v2["backup_id"]})
    assert [e["action"] for e in restores].count("restore") == 1
    logs = client.ok("GET", f"/deployments/{rollback_id}/logs")["items"]
    progress = [line for line in logs if (line["metadata"] or {}).get("progress")]
    assert progress and progress[-1]["message"].split(": ", 1)[1].startswith("100% ")


@one_store
def test_without_the_flag_the_rollback_says_a_data_restore_is_available(
    stack: dict[str, Any], app_db: str, tmp_path: Path
) -> None:
    client = setup(stack, app_db)
    deploy(client, "v1.0.0")
    v2 = deploy(client, "v2.0.0")
    backup = client.ok("GET", f"/backups/{v2['backup_id']}")
    cli = Cli(stack["server"].url, stack["token"], tmp_path)
    proc = cli.run("rollback", "web")
    lines = proc.stdout.splitlines()
    assert lines[1] == (
        "a data restore is available: v2.0.0 migrated the data after pre-deployment backup(s) "
        "were taken:"
    ), proc.stdout
    assert lines[2].startswith(f"  {backup['name']} of app-db (database "), proc.stdout
    assert "`pilothouse rollback web --with-data` restores it" in proc.stdout
    assert f"`pilothouse backup restore {backup['name']} --clean --to DSN`" in proc.stdout
    # the data is left as it is
    assert columns(app_db) == ["id", "name", "note"]
    rollback = client.ok("GET", "/deployments", params={"service": "web"})["items"][0]
    assert rollback["event_type"] == "rollback" and rollback["restore_backup_ids"] is None
