"""/services/{ref}/scaling: set, read, validate (422 naming field and rule), delete; the
scaling events of a manual scale."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, one_store


@one_store
def test_policy_set_show_change_and_delete(api: Api, world: dict[str, Any]) -> None:
    assert api.get("/services/web/scaling").status_code == 404
    made = api.ok(api.put("/services/web/scaling", {"min_instances": 2, "max_instances": 6}))
    assert made["service"] == "web" and made["environment"] == "prod"
    assert (made["min_instances"], made["max_instances"], made["mode"]) == (2, 6, "step")
    # The seed's defaults for the rest.
    assert made["scale_up_threshold"] == 0.8 and made["evaluation_period_seconds"] == 300
    changed = api.ok(
        api.put(
            "/services/web/scaling",
            {
                "mode": "target",
                "target_cpu_percent": 60,
                "schedules": [{"cron": "0 9 * * 1-5", "minutes": 540, "min_instances": 4}],
            },
        )
    )
    assert changed["min_instances"] == 2 and changed["mode"] == "target"
    assert changed["schedules"][0]["min_instances"] == 4
    assert api.ok(api.get("/services/web/scaling"))["target_cpu_percent"] == 60
    # null keeps a field's value, except metric_target, which it clears (pilothouse.yaml
    # needs that to go back from a named metric)
    custom = {"metric": "queue_depth", "metric_target": 5, "min_instances": None}
    assert api.ok(api.put("/services/web/scaling", custom))["metric_target"] == 5
    refused = api.put("/services/web/scaling", {"metric_target": None})
    assert refused.status_code == 422 and "is required" in refused.text
    back = api.ok(api.put("/services/web/scaling", {"metric": "cpu", "metric_target": None}))
    assert back["metric_target"] is None and back["min_instances"] == 2
    assert api.ok(api.put("/services/web/scaling", {"enabled": False}))["enabled"] is False
    viewer = api.as_(api.user("val", "viewer"))
    assert viewer.put("/services/web/scaling", {"enabled": True}).status_code in (403, 404)
    assert api.delete("/services/web/scaling").status_code == 204
    assert api.get("/services/web/scaling").status_code == 404


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"min_instances": 0}, "min_instances", "1-100 replicas (seed 004), and scaling to zero"),
    ({"min_instances": 5, "max_instances": 3}, "min_instances", "<= max_instances (3)"),
    ({"max_instances": 101}, "max_instances", "less than or equal to 100"),
    ({"scale_up_threshold": 1.5}, "scale_up_threshold", "less than or equal to 1"),
    (
        {"scale_up_threshold": 0.3, "scale_down_threshold": 0.5},
        "scale_up_threshold",
        "greater than scale_down_threshold",
    ),
    ({"metric": "queue_depth"}, "metric_target", "is required"),
    (
        {"schedules": [{"cron": "every day", "minutes": 5, "min_instances": 2}]},
        "schedules.0.cron",
        "five-field cron",
    ),
    (
        {"schedules": [{"cron": "0 9 * * *", "minutes": 5, "min_instances": 50}]},
        "schedules.0.min_instances",
        "<= max_instances",
    ),
    ({"metric_stat": "median"}, "metric_stat", "must be one of"),
]


@one_store
def test_policy_refused_with_field_and_rule(api: Api, world: dict[str, Any]) -> None:
    for body, field, rule in REFUSED:
        response = api.put("/services/web/scaling", body)
        assert response.status_code == 422, response.text
        problem = response.json()["detail"][0]
        assert problem["field"].endswith(field) and rule in problem["rule"], problem
    assert api.get("/services/web/scaling").status_code == 404  # nothing was stored


@one_store
def test_manual_scale_writes_a_scaling_event(api: Api, world: dict[str, Any]) -> None:
    api.ok(api.post("/services/web/scale", {"target_replicas": 3}))
    events = api.ok(api.get("/services/web/scaling/events"))
    assert len(events) == 1
    event = events[0]
    assert (event["action"], event["triggered_by"], event["triggered_by_user"]) == (
        "manual_scale",
        "manual",
        "admin",
    )
    assert (event["instances_before"], event["instances_after"]) == (1, 3)
    assert event["success"] is True and "by hand" in event["trigger_reason"]
