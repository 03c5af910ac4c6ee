"""Issue 11.2 and 11.6: no equality oracle on secrets for callers who may not reveal them, and
secrecy that sticks until someone explicitly makes a variable plain (audited)."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.config import Settings
from pilothouse.setup import ensure_master_key
from tests.conftest import Api

SECRET = "sntl-oracle-7Qx2"


@pytest.fixture(autouse=True)
def _key(settings: Settings) -> None:
    ensure_master_key(settings.master_key_path)


def put(api: Api, env: str, key: str, value: str, status: int = 200, **extra: Any) -> Any:
    return api.ok(
        api.client.put(
            f"/api/v1/environments/{env}/vars/{key}",
            json={"value": value, **extra},
            headers={"Authorization": f"Bearer {api.token}"},
        ),
        status,
    )


def listed(api: Api, env: str) -> dict[str, Any]:
    return {v["key"]: v for v in api.ok(api.get(f"/environments/{env}/vars"))}


def audit_actions(api: Api) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api.ok(api.get("/audit", params={"limit": 1000}))
    return rows


@pytest.fixture
def operator(api: Api, world: dict[str, Any]) -> Api:
    op = api.as_(api.user("ola", "operator"))
    api.ok(api.post("/environments", {"name": "staging", "type": "staging"}), 201)
    for env in ("prod", "staging"):
        api.ok(api.post(f"/environments/{env}/grants", {"user": "ola"}), 204)
    put(api, "prod", "BOT_TOKEN", SECRET, is_secret=True)
    return op


def test_put_answers_the_same_for_a_right_and_a_wrong_guess(api: Api, operator: Api) -> None:
    right = put(operator, "prod", "BOT_TOKEN", SECRET)
    wrong = put(operator, "prod", "BOT_TOKEN", "a wrong guess")
    again = put(operator, "prod", "BOT_TOKEN", "a wrong guess")
    assert right["changed"] is wrong["changed"] is again["changed"] is True
    # an admin, who may reveal the value anyway, is told when nothing changed
    assert put(api, "prod", "BOT_TOKEN", "a wrong guess")["changed"] is False


def test_import_dry_run_does_not_tell_same_from_different(api: Api, operator: Api) -> None:
    def plan(who: Api, value: str) -> Any:
        body = {"values": {"BOT_TOKEN": value}, "dry_run": True}
        return who.ok(who.post("/environments/prod/vars-import", body))

    assert plan(operator, SECRET) == plan(operator, "a wrong guess")
    assert plan(operator, SECRET)["changed"] == ["BOT_TOKEN"]
    assert plan(api, SECRET)["unchanged"] == ["BOT_TOKEN"]  # the admin may know
    previews = [a for a in audit_actions(api) if a["action"] == "var_import_preview"]
    assert len(previews) == 4 and previews[0]["changes"]["variables"] == ["BOT_TOKEN"]
    assert SECRET not in str(previews)


def test_diff_does_not_compare_secrets_for_non_admins(api: Api, operator: Api) -> None:
    put(api, "staging", "BOT_TOKEN", SECRET, is_secret=True)
    put(api, "prod", "OTHER_TOKEN", "x1-other-value", is_secret=True)
    put(api, "staging", "OTHER_TOKEN", "x2-other-value", is_secret=True)
    put(api, "prod", "LOG_LEVEL", "INFO")
    put(api, "staging", "LOG_LEVEL", "DEBUG")
    seen = operator.ok(operator.get("/vars-diff", params={"left": "staging", "right": "prod"}))
    assert seen["different"] == ["LOG_LEVEL"]
    assert seen["secrets_not_compared"] == ["BOT_TOKEN", "OTHER_TOKEN"]
    full = api.ok(api.get("/vars-diff", params={"left": "staging", "right": "prod"}))
    assert full["different"] == ["LOG_LEVEL", "OTHER_TOKEN"]
    assert full["secrets_not_compared"] == []
    diffs = [a for a in audit_actions(api) if a["action"] == "var_diff"]
    assert len(diffs) == 2 and {d["changes"]["compared"] for d in diffs} == {"all", "plain only"}


def test_secrecy_sticks_until_made_plain_explicitly(api: Api, operator: Api) -> None:
    put(operator, "prod", "BOT_TOKEN", "new-value-1")  # no is_secret: stays secret
    put(operator, "prod", "BOT_TOKEN", "new-value-2", is_secret=False)  # still secret
    assert listed(api, "prod")["BOT_TOKEN"]["is_secret"] is True
    body = {"values": {"BOT_TOKEN": "new-value-3"}, "secret_keys": []}
    result = operator.ok(operator.post("/environments/prod/vars-import", body))
    assert "BOT_TOKEN" in result["secret"]
    assert listed(api, "prod")["BOT_TOKEN"]["value"] == "********"

    put(operator, "prod", "BOT_TOKEN", "now-public", plain=True)
    row = listed(api, "prod")["BOT_TOKEN"]
    assert row["is_secret"] is False and row["value"] == "now-public"
    made_plain = [a for a in audit_actions(api) if a["action"] == "var_made_plain"]
    assert len(made_plain) == 1 and made_plain[0]["changes"]["variable"] == "BOT_TOKEN"
    bad = api.client.put(
        "/api/v1/environments/prod/vars/BOT_TOKEN",
        json={"value": "v", "is_secret": True, "plain": True},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert bad.status_code == 422


def test_names_and_values_that_look_secret_become_secrets(api: Api, world: Any) -> None:
    put(api, "prod", "STRIPE_KEY", "sk_live_x")
    put(api, "prod", "CACHE", "redis://:pw-in-url@cache:6379/0")
    put(api, "prod", "LOG_LEVEL", "INFO")
    body = {
        "values": {
            "SESSION_SECRET": "s-session-key",
            "DB": "postgresql://u:pw@db/app",
            "PORT": "80",
        }
    }
    result = api.ok(api.post("/environments/prod/vars-import", body))
    assert result["secret"] == ["DB", "SESSION_SECRET"]
    rows = listed(api, "prod")
    assert {k for k, v in rows.items() if v["is_secret"]} == {
        "STRIPE_KEY",
        "CACHE",
        "DB",
        "SESSION_SECRET",
    }
