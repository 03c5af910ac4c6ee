"""Seed 000: deployments older than 90 days are archived by the registered `deployments.archive`
loop, with a controlled clock: hidden from default lists, shown with `?archived=true`, still
readable by id and in the audit trail; active and live ones are never archived."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.deployments import archive
from tests.conftest import SHA, Api, LiveServer, one_store
from tests.retention_support import run_registered
from tests.variables.test_cli_and_rotation import run_cli


def _move(api: Api, dep: dict[str, Any], *steps: str) -> dict[str, Any]:
    for step in steps:
        dep = api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))
    return dep


def _deploy(api: Api, version: str, *steps: str) -> dict[str, Any]:
    dep = api.ok(api.post("/deployments", {"service": "web", "version": version}), 201)
    return _move(api, dep, *steps)


def _versions(api: Api, **params: Any) -> list[str]:
    page = api.ok(api.get("/deployments", params=params))
    return [d["version"] for d in page["items"]]


def test_old_deployments_are_archived_not_deleted(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.ok(api.post("/environments", {"name": "prod", "type": "production"}), 201)
    api.ok(
        api.post("/services", {"environment": "prod", "name": "web", "command": "x {port}"}), 201
    )
    for version in ("v1.0.0", "v2.0.0", "v3.0.0"):
        api.ok(
            api.post("/artifacts", {"service": "web", "version": version, "commit_sha": SHA}), 201
        )
    live = ("building", "deploying", "success")
    v1 = _deploy(api, "v1.0.0", *live)
    v2 = _deploy(api, "v2.0.0", *live)  # live from here on
    v3 = _deploy(api, "v3.0.0", "building", "deploying", "failed")
    assert _versions(api) == ["v3.0.0", "v2.0.0", "v1.0.0"]

    def archive_at(days: int) -> None:
        run_registered(
            settings,
            "deployments.archive",
            at=utcnow() + timedelta(days=days),
            clock_in=archive,
            monkeypatch=monkeypatch,
        )

    archive_at(89)  # not old enough
    assert _versions(api) == ["v3.0.0", "v2.0.0", "v1.0.0"]
    assert _versions(api, archived="true") == []

    pending = _deploy(api, "v3.0.0")  # active: somebody's work, never archived
    archive_at(91)
    # v2's success keeps the live release live: it stays in the list
    assert _versions(api) == ["v3.0.0", "v2.0.0"]
    assert pending["id"] in [d["id"] for d in api.ok(api.get("/deployments"))["items"]]
    archived = api.ok(api.get("/deployments", params={"archived": "true"}))["items"]
    assert [d["id"] for d in archived] == [v3["id"], v1["id"]]
    assert all(d["archived_at"] for d in archived)

    # kept for audit: readable by id, with its audit entry and its history
    again = api.ok(api.get(f"/deployments/{v1['id']}"))
    assert again["archived_at"] and again["status"] == "success"
    entries = api.ok(api.get("/audit", params={"entity_type": "deployment", "entity_id": v1["id"]}))
    assert entries[0]["action"] == "archive"
    assert "90 days" in entries[0]["changes"]["reason"]

    # a second pass changes nothing; the filters combine with the flag
    archive_at(92)
    assert len(api.ok(api.get("/deployments", params={"archived": "true"}))["items"]) == 2
    assert _versions(api, archived="true", status="failed") == ["v3.0.0"]
    assert v2["status"] == "success"


@one_store
def test_cli_lists_archived_deployments_with_a_flag(
    api: Api, settings: Settings, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.ok(api.post("/environments", {"name": "prod", "type": "production"}), 201)
    api.ok(
        api.post("/services", {"environment": "prod", "name": "web", "command": "x {port}"}), 201
    )
    for version in ("v1.0.0", "v2.0.0"):
        api.ok(
            api.post("/artifacts", {"service": "web", "version": version, "commit_sha": SHA}), 201
        )
    old = _deploy(api, "v1.0.0", "building", "deploying", "success")
    live = _deploy(api, "v2.0.0", "building", "deploying", "success")
    run_registered(
        settings,
        "deployments.archive",
        at=utcnow() + timedelta(days=100),
        clock_in=archive,
        monkeypatch=monkeypatch,
    )
    with LiveServer(settings) as server:
        default = run_cli(server, admin_token, "deployments", "list", "--json")
        assert [d["id"] for d in json.loads(default.stdout)["items"]] == [live["id"]]
        archived = run_cli(server, admin_token, "deployments", "list", "--archived")
        assert archived.returncode == 0, archived.stderr
        assert "v1.0.0" in archived.stdout and "v2.0.0" not in archived.stdout
        shown = run_cli(server, admin_token, "deployments", "show", old["id"], "--json")
        assert json.loads(shown.stdout)["archived_at"]
