"""`POST /services/{ref}/rollback` picks its target from what went live (issue 12.1).

The statuses are driven by hand through the API (no worker), exactly as the engine leaves
them: v1 and v2 succeed, v3-broken fails and is rolled back automatically to v2.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import SHA, Api


def _move(api: Api, dep: dict[str, Any], *steps: str) -> dict[str, Any]:
    for step in steps:
        dep = api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))
    return dep


def _deploy(api: Api, version: str, *steps: str, **extra: Any) -> dict[str, Any]:
    dep = api.ok(api.post("/deployments", {"service": "web", "version": version, **extra}), 201)
    return _move(api, dep, *steps)


def _history(api: Api) -> None:
    api.ok(api.post("/environments", {"name": "prod", "type": "production"}), 201)
    svc = api.ok(
        api.post("/services", {"environment": "prod", "name": "web", "command": "run {port}"}), 201
    )
    for version in ("v1.0.0", "v2.0.0", "v3.0.0-broken", "v4.0.0"):
        api.ok(
            api.post("/artifacts", {"service": svc["id"], "version": version, "commit_sha": SHA}),
            201,
        )
    live = ("building", "deploying", "success")
    _deploy(api, "v1.0.0", *live)
    _deploy(api, "v2.0.0", *live)
    broken = _deploy(api, "v3.0.0-broken", "building", "deploying", "failed")
    _deploy(
        api,
        "v2.0.0",
        *live,
        event_type="rollback",
        rollback_from=broken["id"],
        triggered_by="automated",
    )
    _move(api, broken, "rolled_back")


def test_rollback_skips_a_release_that_never_went_live(api: Api) -> None:
    _history(api)
    back = api.ok(api.post("/services/web/rollback", {}), 201)
    assert back["version"] == "v1.0.0", "v3.0.0-broken never went live: it is never a target"
    assert back["event_type"] == "rollback" and back["triggered_by"] == "manual"


def test_rollback_to_a_version_that_never_went_live_is_refused(api: Api) -> None:
    _history(api)
    for version in ("v3.0.0-broken", "v4.0.0"):
        refused = api.post("/services/web/rollback", {"to": version})
        assert refused.status_code == 409, refused.text
        message = refused.json()["message"]
        assert f"web {version} never went live" in message and "deploy" in message
    assert api.ok(api.post("/services/web/rollback", {"to": "v1.0.0"}), 201)["version"] == "v1.0.0"


def test_no_earlier_release(api: Api) -> None:
    _history(api)
    # Roll back to v1 by hand: v2 is rolled back, so nothing stands under v1 any more.
    back = api.ok(api.post("/services/web/rollback", {}), 201)
    _move(api, back, "building", "deploying", "success")
    refused = api.post("/services/web/rollback", {})
    assert refused.status_code == 409
    assert "no earlier release" in refused.json()["message"]
