"""Variables through the API: masking, reveal (admin, audited), versions, revert, import,
requirements and the check, diff, and secrets that never appear where they should not."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.config import Settings
from pilothouse.setup import ensure_master_key
from tests.conftest import Api

SENTINEL = "sntl-9f3K2-secret-value"


@pytest.fixture(autouse=True)
def _key(settings: Settings) -> None:
    ensure_master_key(settings.master_key_path)


def put(api: Api, env: str, key: str, value: str, **extra: Any) -> Any:
    return api.ok(
        api.client.put(
            f"/api/v1/environments/{env}/vars/{key}",
            json={"value": value, **extra},
            headers={"Authorization": f"Bearer {api.token}"},
        )
    )


def test_masking_reveal_versions_and_revert(api: Api, world: dict[str, Any]) -> None:
    assert put(api, "prod", "LOG_LEVEL", "INFO") == {
        "key": "LOG_LEVEL",
        "version": 1,
        "changed": True,
    }
    assert put(api, "prod", "LOG_LEVEL", "INFO")["changed"] is False  # idempotent
    put(api, "prod", "LOG_LEVEL", "DEBUG")
    put(api, "prod", "BOT_TOKEN", SENTINEL, is_secret=True)
    listed = {v["key"]: v for v in api.ok(api.get("/environments/prod/vars"))}
    assert listed["LOG_LEVEL"]["value"] == "DEBUG" and listed["LOG_LEVEL"]["version"] == 2
    assert listed["BOT_TOKEN"]["value"] == "********" and listed["BOT_TOKEN"]["is_secret"]

    operator = api.as_(api.user("ola", "operator"))
    api.ok(api.post("/environments/prod/grants", {"user": "ola"}), 204)
    assert operator.get("/environments/prod/vars").status_code == 200
    denied = operator.get("/environments/prod/vars", params={"reveal": "true"})
    assert denied.status_code == 403 and SENTINEL not in denied.text
    revealed = {
        v["key"]: v for v in api.ok(api.get("/environments/prod/vars", params={"reveal": "true"}))
    }
    assert revealed["BOT_TOKEN"]["value"] == SENTINEL
    audit = api.ok(api.get("/audit", params={"limit": 1000}))
    reveal = [a for a in audit if a["action"] == "var_reveal"]
    assert reveal and reveal[0]["changes"] == {
        "environment": "prod",
        "scope": None,
        "variables": ["BOT_TOKEN"],
    }

    versions = api.ok(api.get("/environments/prod/vars/LOG_LEVEL/history"))
    assert [(v["version"], v["action"]) for v in versions] == [(1, "set"), (2, "set")]
    assert api.ok(api.post("/environments/prod/vars/LOG_LEVEL/revert", {"to": 1}))["version"] == 3
    listed = {v["key"]: v for v in api.ok(api.get("/environments/prod/vars"))}
    assert listed["LOG_LEVEL"]["value"] == "INFO" and listed["LOG_LEVEL"]["version"] == 3
    assert api.post("/environments/prod/vars/LOG_LEVEL/revert", {"to": 9}).status_code == 404

    api.ok(api.delete("/environments/prod/vars/LOG_LEVEL"), 204)
    assert api.delete("/environments/prod/vars/LOG_LEVEL").status_code == 404
    history = api.ok(api.get("/environments/prod/vars/LOG_LEVEL/history"))
    assert history[-1]["action"] == "unset"

    # the sentinel is nowhere but the admin's reveal
    everything = " ".join(
        api.get(path).text
        for path in (
            "/environments/prod/vars",
            "/environments/prod/vars/BOT_TOKEN/history",
            "/audit?limit=1000",
            "/environments/prod",
        )
    )
    assert SENTINEL not in everything


def test_service_scope_overrides(api: Api, world: dict[str, Any]) -> None:
    put(api, "prod", "WORKERS", "2")
    put(api, "prod", "WORKERS", "8", service="web")
    env_level = {v["key"]: v["value"] for v in api.ok(api.get("/environments/prod/vars"))}
    svc_level = {
        v["key"]: (v["value"], v["scope"])
        for v in api.ok(api.get("/environments/prod/vars", params={"service": "web"}))
    }
    assert env_level["WORKERS"] == "2" and svc_level["WORKERS"] == ("8", "web")


@pytest.mark.parametrize(
    ("key", "body", "field"),
    [
        ("1BAD", {"value": "x"}, "key"),
        ("OK", {"value": "x" * 65537}, "value"),
        ("OK", {"value": "a\x00b"}, "value"),
        ("OK", {"value": "x", "surprise": 1}, "surprise"),
    ],
)
def test_validation(
    api: Api, world: dict[str, Any], key: str, body: dict[str, Any], field: str
) -> None:
    response = api.client.put(
        f"/api/v1/environments/prod/vars/{key}",
        json=body,
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == field


def test_requirements_check_import_and_diff(api: Api, world: dict[str, Any]) -> None:
    for key, body in {
        "DATABASE_URL": {"rule": "postgres_dsn"},
        "WEBHOOK_URL": {"rule": "https_url"},
        "LOG_LEVEL": {"rule": "one_of", "args": {"values": ["DEBUG", "INFO"]}},
        "BOT_TOKEN": {"rule": "regex", "args": {"pattern": r"\d+:[A-Za-z0-9_-]+"}},
    }.items():
        api.ok(
            api.client.put(
                f"/api/v1/environments/prod/requirements/{key}",
                json=body,
                headers={"Authorization": f"Bearer {api.token}"},
            )
        )
    bad_rule = api.client.put(
        "/api/v1/environments/prod/requirements/X",
        json={"rule": "regex", "args": {"pattern": "("}},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert bad_rule.status_code == 422 and bad_rule.json()["detail"][0]["field"] == "rule"
    check = api.ok(api.get("/environments/prod/vars-check"))
    assert check == {
        "ok": False,
        "problems": [
            "BOT_TOKEN: is required",
            "DATABASE_URL: is required",
            "LOG_LEVEL: is required",
            "WEBHOOK_URL: is required",
        ],
    }
    values = {
        "DATABASE_URL": "postgresql://app@db/app",
        "WEBHOOK_URL": "http://insecure.example",
        "LOG_LEVEL": "INFO",
        "BOT_TOKEN": "12345:" + SENTINEL,
    }
    plan = api.ok(
        api.post(
            "/environments/prod/vars-import",
            {"values": values, "secret_keys": ["BOT_TOKEN", "DATABASE_URL"], "dry_run": True},
        )
    )
    assert plan["added"] == sorted(values) and plan["applied"] is False
    assert api.ok(api.get("/environments/prod/vars")) == []
    api.ok(
        api.post("/environments/prod/vars-import", {"values": values, "secret_keys": ["BOT_TOKEN"]})
    )
    check = api.ok(api.get("/environments/prod/vars-check"))
    assert check["problems"] == ["WEBHOOK_URL: must be an https:// URL"]
    put(api, "prod", "WEBHOOK_URL", "https://hooks.example.com/x")
    assert api.ok(api.get("/environments/prod/vars-check")) == {"ok": True, "problems": []}

    api.ok(api.post("/environments", {"name": "staging", "type": "staging"}), 201)
    put(api, "staging", "LOG_LEVEL", "DEBUG")
    put(api, "staging", "BOT_TOKEN", "12345:" + SENTINEL, is_secret=True)
    put(api, "staging", "ONLY_HERE", "1")
    diff = api.ok(api.get("/vars-diff", params={"left": "staging", "right": "prod"}))
    assert diff == {
        "only_in_staging": ["ONLY_HERE"],
        "only_in_prod": ["DATABASE_URL", "WEBHOOK_URL"],
        "different": ["LOG_LEVEL"],
        "secrets_not_compared": [],  # an admin's diff compares secrets too
    }
    assert SENTINEL not in str(diff) and SENTINEL not in api.get("/audit?limit=1000").text
