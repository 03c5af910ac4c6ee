"""Seed 000: development environments are not backed up on a schedule unless forced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilothouse.backups.schedule import development_refusal
from pilothouse.config import Settings
from pilothouse.setup import ensure_master_key
from tests.conftest import Api, LiveServer, one_store
from tests.variables.test_cli_and_rotation import run_cli


@pytest.mark.parametrize(
    ("env_type", "schedule", "force", "refused"),
    [
        ("development", "0 2 * * *", False, True),
        ("development", "0 2 * * *", True, False),
        ("development", None, False, False),
        ("development", "", False, False),
        ("staging", "0 2 * * *", False, False),
        ("production", "0 2 * * *", False, False),
        (None, "0 2 * * *", False, False),  # a target outside any environment
    ],
)
def test_development_refusal(
    env_type: str | None, schedule: str | None, force: bool, refused: bool
) -> None:
    rule = development_refusal(env_type, schedule, force=force)
    assert (rule is not None) is refused
    if rule:
        assert "development" in rule and "force" in rule


# -- through the API, on both stores ---------------------------------------------------------


@pytest.fixture
def envs(api: Api, settings: Settings) -> None:
    ensure_master_key(settings.master_key_path)
    api.ok(api.post("/environments", {"name": "dev", "type": "development"}), 201)
    api.ok(api.post("/environments", {"name": "prod", "type": "production"}), 201)


def _target(sqlite_source: Path, name: str, env: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "dsn": f"sqlite:///{sqlite_source}", "environment": env, **extra}


def _refused(response: Any) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["field"] == "schedule", detail
    assert "development" in detail[0]["rule"] and "force" in detail[0]["rule"]


def test_a_development_target_is_not_scheduled_unless_forced(
    api: Api, envs: None, sqlite_source: Path
) -> None:
    # no schedule given: a development target gets none (a production one gets the default)
    dev = api.ok(api.post("/backup-targets", _target(sqlite_source, "dev-db", "dev")), 201)
    assert dev["schedule"] is None
    prod = api.ok(api.post("/backup-targets", _target(sqlite_source, "prod-db", "prod")), 201)
    assert prod["schedule"] == "0 2 * * *"

    # an explicit schedule is refused, naming the field and the rule; nothing is saved
    _refused(
        api.post("/backup-targets", _target(sqlite_source, "dev-2", "dev", schedule="0 1 * * *"))
    )
    assert api.get("/backup-targets/dev-2").status_code == 404
    forced = api.ok(
        api.post(
            "/backup-targets",
            _target(sqlite_source, "dev-2", "dev", schedule="0 1 * * *", force=True),
        ),
        201,
    )
    assert forced["schedule"] == "0 1 * * *"

    # changing a development target's schedule: the same rule
    _refused(api.patch("/backup-targets/dev-db", {"schedule": "0 3 * * *"}))
    assert api.ok(api.get("/backup-targets/dev-db"))["schedule"] is None
    patched = api.ok(api.patch("/backup-targets/dev-db", {"schedule": "0 3 * * *", "force": True}))
    assert patched["schedule"] == "0 3 * * *"
    # removing a schedule or changing other fields needs no force
    assert api.ok(api.patch("/backup-targets/dev-db", {"schedule": ""}))["schedule"] is None
    assert api.ok(api.patch("/backup-targets/prod-db", {"schedule": "0 4 * * *"}))["schedule"]


@one_store
def test_cli_target_add_and_set_force(
    settings: Settings, admin_token: str, sqlite_source: Path
) -> None:
    ensure_master_key(settings.master_key_path)
    dsn = f"sqlite:///{sqlite_source}"
    with LiveServer(settings) as server:

        def cli(*args: str) -> Any:
            return run_cli(server, admin_token, *args)

        assert cli("env", "create", "dev", "--type", "development").returncode == 0
        added = cli("backup", "target", "add", "db1", "--dsn", dsn, "--env", "dev", "--no-check")
        assert added.returncode == 0 and "schedule none" in added.stdout, added.stderr
        refused = cli(
            "backup", "target", "add", "db2", "--dsn", dsn, "--env", "dev", "--no-check",
            "--schedule", "0 2 * * *",
        )  # fmt: skip
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith(
            "error: schedule: scheduled backups are off for development"
        )
        forced = cli(
            "backup", "target", "add", "db2", "--dsn", dsn, "--env", "dev", "--no-check",
            "--schedule", "0 2 * * *", "--force",
        )  # fmt: skip
        assert forced.returncode == 0 and "schedule 0 2 * * *" in forced.stdout, forced.stderr
        assert cli("backup", "target", "set", "db1", "--schedule", "0 5 * * *").returncode == 1
        assert (
            cli("backup", "target", "set", "db1", "--schedule", "0 5 * * *", "--force").returncode
            == 0
        )
