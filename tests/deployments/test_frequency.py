"""Issue 13.3: rollbacks are exempt from `max_deployment_frequency` and do not count toward it."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.deployments import frequency
from tests.conftest import SHA, Api


@pytest.mark.parametrize(
    ("event_type", "recent", "per_hour", "refused"),
    [
        ("deploy", 0, None, False),  # no limit set
        ("deploy", 1, 2, False),
        ("deploy", 2, 2, True),
        ("restart", 3, 2, True),
        ("rollback", 2, 2, False),  # a way back is never refused
        ("rollback", 50, 1, False),
        ("scale", 5, 2, False),  # an urgent scale-up never waits
    ],
)
def test_refusal(event_type: str, recent: int, per_hour: int | None, refused: bool) -> None:
    message = frequency.refusal(event_type, recent=recent, per_hour=per_hour, environment="prod")
    assert (message is not None) == refused
    if message:
        assert f"{per_hour} deployment(s) per hour" in message and "rollback" in message


@pytest.mark.parametrize(
    ("event_type", "counts"),
    [
        ("deploy", True),
        ("restart", True),
        ("config_update", True),
        ("rollback", False),
        ("scale", False),
    ],
)
def test_what_counts(event_type: str, counts: bool) -> None:
    assert frequency.counts(event_type) == counts


def _deploy(api: Api, version: str, *steps: str) -> dict[str, Any]:
    dep = api.ok(api.post("/deployments", {"service": "web", "version": version}), 201)
    for step in steps:
        dep = api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))
    return dep  # type: ignore[no-any-return]


LIVE = ("building", "deploying", "success")


def test_rollback_is_accepted_at_the_limit_and_does_not_count(api: Api) -> None:
    api.ok(
        api.post(
            "/environments",
            {"name": "prod", "type": "production", "limits": {"max_deployment_frequency": 3}},
        ),
        201,
    )
    svc = api.ok(
        api.post("/services", {"environment": "prod", "name": "web", "command": "run {port}"}), 201
    )
    for version in ("v1.0.0", "v2.0.0", "v3.0.0"):
        api.ok(
            api.post("/artifacts", {"service": svc["id"], "version": version, "commit_sha": SHA}),
            201,
        )
    _deploy(api, "v1.0.0", *LIVE)
    _deploy(api, "v2.0.0", *LIVE)
    _deploy(api, "v3.0.0", *LIVE)
    refused = api.post("/deployments", {"service": "web", "version": "v1.0.0"})
    assert refused.status_code == 409 and "3 deployment(s) per hour" in refused.json()["message"]

    back = api.ok(api.post("/services/web/rollback", {}), 201)
    assert back["event_type"] == "rollback" and back["version"] == "v2.0.0"
    for step in LIVE:
        api.ok(api.post(f"/deployments/{back['id']}/transition", {"to": step}))

    # the rollback did not count: lower the limit to 4 and one more deploy fits, the next does not
    api.ok(api.patch("/environments/prod", {"limits": {"max_deployment_frequency": 4}}))
    _deploy(api, "v3.0.0", *LIVE)
    again = api.post("/deployments", {"service": "web", "version": "v1.0.0"})
    assert again.status_code == 409 and "4 in the last hour" in again.json()["message"]
