"""Push ingestion over the API (JSON and Prometheus text), ingest tokens, queries, series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import Api, one_store

PROM_TEXT = """\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{method="get",code="200"} 1027
http_requests_total{method="post",code="500"} 3
# HELP queue_depth Jobs waiting.
# TYPE queue_depth gauge
queue_depth 7
"""


def _ingest_token(api: Api, environment: str) -> str:
    body = api.ok(api.post("/tokens", {"name": "pusher", "ingest_environment": environment}), 201)
    assert body["scope"] == "ingest"
    token: str = body["token"]
    return token


def _samples(n: int, **tags: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "name": "http_request_duration_ms",
            "tags": {"service": "web", **tags},
            "value": float(i),
            "timestamp": (now - timedelta(seconds=n - i)).isoformat(),
            "unit": "ms",
        }
        for i in range(1, n + 1)
    ]


def test_ingest_token_pushes_json_and_prometheus_into_its_environment(
    api: Api, world: dict[str, Any]
) -> None:
    pusher = api.as_(_ingest_token(api, "prod"))
    got = pusher.ok(pusher.post("/metrics/ingest", {"samples": _samples(100)}))
    assert got == {"written": 100, "environment": "prod"}
    response = pusher.client.post(
        "/api/v1/metrics/ingest/prometheus?job=batch",
        content=PROM_TEXT,
        headers={"Authorization": f"Bearer {pusher.token}", "Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["written"] == 3
    series = api.ok(api.get("/metrics/series", params={"environment": "prod"}))
    by_name = {(s["name"], s["tags"].get("code")): s for s in series}
    assert by_name[("http_request_duration_ms", None)]["service_id"] == world["service"]["id"]
    assert by_name[("http_request_duration_ms", None)]["unit"] == "ms"
    assert by_name[("http_requests_total", "500")]["tags"] == {
        "method": "post",
        "code": "500",
        "job": "batch",
        "environment": "prod",
    }
    result = api.ok(
        api.get(
            "/metrics/query",
            params={
                "name": "http_request_duration_ms",
                "tag": "service=web",
                "window": "1h",
                "stat": ["avg", "p95", "max", "latest", "count"],
            },
        )
    )
    figures = result["groups"][0]["figures"]
    assert figures["count"] == 100 and figures["max"] == 100 and figures["latest"] == 100
    assert figures["avg"] == 50.5 and abs(figures["p95"] - 95.05) < 1e-9
    assert result["groups"][0]["points"]
    grouped = api.ok(
        api.get(
            "/metrics/query",
            params={"name": "http_requests_total", "stat": "latest", "group_by": "code"},
        )
    )
    assert {g["group"]: g["value"] for g in grouped["groups"]} == {"200": 1027, "500": 3}


def test_an_ingest_token_can_do_nothing_else(api: Api, world: dict[str, Any]) -> None:
    api.ok(api.post("/environments", {"name": "staging", "type": "staging"}), 201)
    pusher = api.as_(_ingest_token(api, "prod"))
    for response in (
        pusher.get("/users/me"),
        pusher.get("/environments"),
        pusher.get("/services"),
        pusher.get("/metrics/series"),
        pusher.get("/metrics/query", params={"name": "x"}),
        pusher.post("/environments", {"name": "mine"}),
        pusher.post("/tokens", {"name": "more"}),
        pusher.delete(f"/services/{world['service']['id']}"),
    ):
        assert response.status_code == 403, response.text
        assert "ingest token may only push metrics" in response.json()["message"]
    # Another environment, named in the body: refused.
    refused = pusher.post("/metrics/ingest", {"environment": "staging", "samples": _samples(1)})
    assert refused.status_code == 403
    assert "prod" in refused.json()["message"]
    # A tag naming another environment is overridden, not obeyed.
    sneaky = _samples(1, environment="staging")
    assert pusher.ok(pusher.post("/metrics/ingest", {"samples": sneaky}))["environment"] == "prod"
    series = api.ok(api.get("/metrics/series"))
    assert {s["tags"]["environment"] for s in series} == {"prod"}


def test_push_errors_name_the_field(api: Api, world: dict[str, Any]) -> None:
    # A normal token must say which environment.
    missing = api.post("/metrics/ingest", {"samples": _samples(1)})
    assert missing.status_code == 422 and "environment" in missing.text
    bad_name = api.post(
        "/metrics/ingest",
        {"environment": "prod", "samples": [{"name": "bad name", "value": 1}]},
    )
    assert bad_name.status_code == 422 and "name" in bad_name.text
    not_prom = api.client.post(
        "/api/v1/metrics/ingest/prometheus?environment=prod",
        content="this is { not prometheus",
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "text/plain"},
    )
    assert not_prom.status_code == 422 and "Prometheus" in not_prom.text
    bad_window = api.get("/metrics/query", params={"name": "x", "window": "soon"})
    assert bad_window.status_code == 422 and "window" in bad_window.text
    viewer = api.as_(api.user("vic", "viewer"))
    # A viewer may not push; an environment the viewer cannot see is a 404.
    assert viewer.post("/metrics/ingest", {"environment": "prod", "samples": []}).status_code == 403


def test_series_thresholds_and_retention_overrides(api: Api, world: dict[str, Any]) -> None:
    api.ok(api.post("/metrics/ingest", {"environment": "prod", "samples": _samples(3)}))
    (series,) = api.ok(api.get("/metrics/series", params={"name": "http_request"}))
    changed = api.ok(
        api.patch(
            f"/metrics/series/{series['id']}",
            {"threshold_warning": 1000, "threshold_critical": 2000, "retention_raw": 7200},
        )
    )
    assert changed["threshold_warning"] == 1000 and changed["retention_raw"] == 7200
    assert api.get("/metrics/series/999999").status_code == 404
    too_short = api.patch(f"/metrics/series/{series['id']}", {"retention_raw": 5})
    assert too_short.status_code == 422


@one_store
def test_alert_rules_update_and_delete(api: Api, world: dict[str, Any]) -> None:
    body = {"name": "slow", "service": "web", "metric": "lat", "expression": "p95", "warning": 5}
    rule = api.ok(api.post("/metrics/rules", body), 201)
    changed = api.ok(
        api.patch(f"/metrics/rules/{rule['id']}", {"critical": 9, "window": "1h", "for_n": 3})
    )
    assert (changed["critical"], changed["window_seconds"], changed["for_n"]) == (9, 3600, 3)
    paused = api.ok(api.patch(f"/metrics/rules/{rule['id']}", {"is_active": False}))
    assert paused["is_active"] is False and paused["warning"] == 5
    for bad, field in (
        ({"for_m": 4}, "for_m"),
        ({"warning": None, "critical": None}, "warning"),
        ({"window": "soon"}, "window"),
        ({"expression": None}, "expression"),
    ):
        refused = api.patch(f"/metrics/rules/{rule['id']}", bad)
        assert refused.status_code == 422 and field in refused.text, (bad, refused.text)
    viewer = api.as_(api.user("vic", "viewer"))
    assert viewer.patch(f"/metrics/rules/{rule['id']}", {"warning": 1}).status_code == 404
    assert api.ok(api.get("/metrics/incidents")) == []
    assert api.delete(f"/metrics/rules/{rule['id']}").status_code == 204
    assert api.delete(f"/metrics/rules/{rule['id']}").status_code == 404
    assert api.ok(api.get("/metrics/rules")) == []
