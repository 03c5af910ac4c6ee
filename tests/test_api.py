"""The REST API end to end on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import SHA, Api


def test_environment_crud_and_soft_delete_frees_the_name(api: Api) -> None:
    env = api.ok(
        api.post(
            "/environments",
            {"name": "staging", "type": "staging", "limits": {"max_deployment_frequency": 4}},
        ),
        201,
    )
    assert env["limits"] == {"max_deployment_frequency": 4}
    dup = api.post("/environments", {"name": "staging"})
    assert dup.status_code == 409 and "already exists" in dup.json()["message"]
    updated = api.ok(api.patch("/environments/staging", {"domain": "staging.example.org"}))
    assert updated["domain"] == "staging.example.org"
    api.ok(api.delete("/environments/staging"), 204)
    assert api.get("/environments/staging").status_code == 404
    assert api.get(f"/environments/{env['id']}").status_code == 404
    assert [e["name"] for e in api.ok(api.get("/environments"))] == []
    again = api.ok(api.post("/environments", {"name": "staging"}), 201)
    assert again["id"] != env["id"]


def test_service_validation_names_field_and_rule(api: Api, world: dict[str, Any]) -> None:
    cases = [
        ({"target_replicas": 0}, "target_replicas", "between 1 and 100"),
        ({"target_replicas": 101}, "target_replicas", "between 1 and 100"),
        ({"resources": {"cpu_cores": 0.4}}, "resources.cpu_cores", "between 0.5 and 32"),
        ({"resources": {"memory_mb": 65537}}, "resources.memory_mb", "between 512 and 65536"),
        ({"resources": {"gpu_units": 9}}, "resources.gpu_units", "between 0 and 8"),
        ({"resources": {"storage_gb": 0}}, "resources.storage_gb", "between 1 and 1000"),
        ({"name": "bad name"}, "name", "1-100 characters"),
        ({"image": "x" * 501}, "image", "1-500 characters"),
        ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
    ]
    for extra, field, rule in cases:
        body = {"environment": "prod", "name": "svc", **extra}
        response = api.post("/services", body)
        assert response.status_code == 422, (extra, response.text)
        detail = response.json()["detail"]
        assert any(d["field"] == field and rule in d["rule"] for d in detail), detail
    ok = api.post(
        "/services",
        {
            "environment": "prod",
            "name": "edge",
            "target_replicas": 100,
            "resources": {"cpu_cores": 32, "memory_mb": 65536, "gpu_units": 8, "storage_gb": 1000},
        },
    )
    assert ok.status_code == 201, ok.text


def test_service_soft_delete_keeps_history_and_frees_name(api: Api, world: dict[str, Any]) -> None:
    svc = world["service"]
    dup = api.post("/services", {"environment": "prod", "name": "web"})
    assert dup.status_code == 409
    api.ok(api.delete(f"/services/{svc['id']}"), 204)
    assert api.get(f"/services/{svc['id']}").status_code == 404
    assert api.get("/services/web").status_code == 404
    assert api.ok(api.get("/services")) == []
    reborn = api.ok(api.post("/services", {"environment": "prod", "name": "web"}), 201)
    assert reborn["id"] != svc["id"]
    audit = api.ok(api.get("/audit", params={"entity_id": svc["id"]}))
    assert {a["action"] for a in audit} >= {"create", "delete", "transition"}


def test_scale_and_service_transitions(api: Api, world: dict[str, Any]) -> None:
    sid = world["service"]["id"]
    assert (
        api.ok(api.post(f"/services/{sid}/scale", {"target_replicas": 7}))["target_replicas"] == 7
    )
    bad = api.post(f"/services/{sid}/scale", {"target_replicas": 101})
    assert bad.status_code == 422
    refused = api.post(f"/services/{sid}/transition", {"to": "running"})
    assert refused.status_code == 409
    assert refused.json()["detail"] == {"entity": "service", "from": "pending", "to": "running"}
    api.ok(api.post(f"/services/{sid}/transition", {"to": "scheduled", "reason": "deploy"}))
    api.ok(api.post(f"/services/{sid}/transition", {"to": "running"}))
    history = api.ok(api.get(f"/history/service/{sid}"))
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "pending"),
        ("pending", "scheduled"),
        ("scheduled", "running"),
    ]
    assert history[1]["reason"] == "deploy" and history[1]["actor"] == "admin"


def test_artifact_validation_and_uniqueness(api: Api, world: dict[str, Any]) -> None:
    sid = world["service"]["id"]
    bad = [
        ({"commit_sha": "abc"}, "commit_sha"),
        ({"git_tag": "1.0"}, "git_tag"),
        ({"image_digest": "sha256:xyz"}, "image_digest"),
        ({"version": "bad version"}, "version"),
    ]
    for extra, field in bad:
        body = {"service": sid, "version": "v2.0.0", "commit_sha": SHA, **extra}
        response = api.post("/artifacts", body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"] == field
    dup = api.post("/artifacts", {"service": sid, "version": "v1.0.0", "commit_sha": SHA})
    assert dup.status_code == 409
    good = api.ok(
        api.post(
            "/artifacts",
            {
                "service": sid,
                "version": "v2.0.0",
                "commit_sha": "B" * 40,
                "git_tag": "v2.0.0",
                "image_digest": "sha256:" + "c" * 64,
            },
        ),
        201,
    )
    assert good["commit_sha"] == "b" * 40
    listed = api.ok(api.get("/artifacts", params={"service": "web"}))
    assert [a["version"] for a in listed] == ["v2.0.0", "v1.1.0", "v1.0.0"]
    patched = api.ok(api.patch(f"/artifacts/{good['id']}", {"changelog": "faster"}))
    assert patched["changelog"] == "faster"
    api.ok(api.delete(f"/artifacts/{good['id']}"), 204)
    assert api.get(f"/artifacts/{good['id']}").status_code == 404


def _deploy(api: Api, version: str = "v1.0.0", **extra: Any) -> dict[str, Any]:
    return api.ok(api.post("/deployments", {"service": "web", "version": version, **extra}), 201)  # type: ignore[no-any-return]


def test_deployment_lifecycle_writes_history_and_marks_artifact(
    api: Api, world: dict[str, Any]
) -> None:
    dep = _deploy(api, commit_message="m" * 800)
    assert dep["status"] == "pending" and len(dep["commit_message"]) == 500
    assert dep["commit_sha"] == SHA and dep["operator"] == "admin"
    for step in ("building", "deploying"):
        api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))
    done = api.ok(
        api.post(
            f"/deployments/{dep['id']}/transition",
            {"to": "success", "health_check_passed": True, "instances_deployed": 1},
        )
    )
    assert done["completed_at"] and done["duration_seconds"] is not None
    assert done["health_check_passed"] is True
    arts = {a["version"]: a for a in api.ok(api.get("/artifacts", params={"service": "web"}))}
    assert arts["v1.0.0"]["deployed"] and not arts["v1.1.0"]["deployed"]

    second = _deploy(api, "v1.1.0")
    assert second["previous_artifact_id"] == arts["v1.0.0"]["id"]
    for step in ("building", "deploying", "success"):
        api.ok(api.post(f"/deployments/{second['id']}/transition", {"to": step}))
    arts = {a["version"]: a for a in api.ok(api.get("/artifacts", params={"service": "web"}))}
    assert arts["v1.1.0"]["deployed"] and not arts["v1.0.0"]["deployed"]

    refused = api.post(f"/deployments/{dep['id']}/transition", {"to": "building"})
    assert refused.status_code == 409
    assert "'success' to 'building'" in refused.json()["message"]
    rolled = api.ok(
        api.post(
            f"/deployments/{dep['id']}/transition", {"to": "rolled_back", "reason": "bad release"}
        )
    )
    assert rolled["rollback_reason"] == "bad release"
    history = api.ok(api.get(f"/history/deployment/{dep['id']}"))
    assert [h["to_status"] for h in history] == [
        "pending",
        "building",
        "deploying",
        "success",
        "rolled_back",
    ]


def _finish(api: Api, dep: dict[str, Any], to: str = "failed") -> None:
    api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": to}))


def test_rollback_deployment_needs_origin(api: Api, world: dict[str, Any]) -> None:
    missing = api.post(
        "/deployments", {"service": "web", "version": "v1.0.0", "event_type": "rollback"}
    )
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "rollback_from"
    first = _deploy(api)
    _finish(api, first)
    rb = _deploy(api, "v1.0.0", event_type="rollback", rollback_from=first["id"])
    assert rb["rollback_from"] == first["id"] and rb["event_type"] == "rollback"


def test_failed_deployment_keeps_error(api: Api, world: dict[str, Any]) -> None:
    dep = _deploy(api)
    failed = api.ok(
        api.post(
            f"/deployments/{dep['id']}/transition", {"to": "failed", "reason": "image missing"}
        )
    )
    assert failed["error_message"] == "image missing" and failed["completed_at"]


def test_deployment_frequency_limit(api: Api, world: dict[str, Any]) -> None:
    api.ok(api.patch("/environments/prod", {"limits": {"max_deployment_frequency": 2}}))
    _finish(api, _deploy(api))
    _finish(api, _deploy(api, "v1.1.0"))
    third = api.post("/deployments", {"service": "web", "version": "v1.0.0"})
    assert third.status_code == 409 and "2 deployment(s) per hour" in third.json()["message"]


def test_unknown_version_is_404(api: Api, world: dict[str, Any]) -> None:
    response = api.post("/deployments", {"service": "web", "version": "v9.9.9"})
    assert response.status_code == 404 and "v9.9.9" in response.json()["message"]


def test_logs_single_batch_and_follow(api: Api, world: dict[str, Any]) -> None:
    dep = _deploy(api)
    path = f"/deployments/{dep['id']}/logs"
    api.ok(api.post(path, {"message": "starting", "source": "build", "metadata": {"step": 1}}), 201)
    lines = [
        {"message": f"line {i}", "level": "warn" if i % 10 == 0 else "info"} for i in range(250)
    ]
    assert api.ok(api.post(f"{path}/batch", {"lines": lines}), 201) == {"accepted": 250}
    first = api.ok(api.get(path, params={"limit": 100}))
    assert first["items"][0]["message"] == "starting"
    assert first["items"][0]["metadata"] == {"step": 1}
    assert first["items"][1]["message"] == "line 0"
    rest = api.ok(api.get(path, params={"after": first["last_seq"], "limit": 1000}))
    messages = [i["message"] for i in first["items"] + rest["items"]]
    assert messages == ["starting"] + [f"line {i}" for i in range(250)]
    warns = api.ok(api.get(path, params={"level": "warn"}))
    assert len(warns["items"]) == 25
    empty = api.post(f"{path}/batch", {"lines": []})
    assert empty.status_code == 422
    bad_level = api.post(path, {"message": "x", "level": "fatal"})
    assert bad_level.status_code == 422 and bad_level.json()["detail"][0]["field"] == "level"


def test_list_filters_and_cursor_pagination(api: Api, world: dict[str, Any]) -> None:
    api.ok(api.post("/services", {"environment": "prod", "name": "api"}), 201)
    api.ok(api.post("/artifacts", {"service": "api", "version": "v1.0.0", "commit_sha": SHA}), 201)
    made = []
    for i in range(7):
        made.append(_deploy(api, "v1.0.0" if i % 2 else "v1.1.0"))
        if i < 6:
            _finish(api, made[-1])  # one active deployment per service: finish all but the last
    other = api.ok(api.post("/deployments", {"service": "api", "version": "v1.0.0"}), 201)

    seen: list[str] = []
    cursor = None
    while True:
        page = api.ok(
            api.get("/deployments", params={"service": "web", "limit": 3, "cursor": cursor})
        )
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [d["id"] for d in reversed(made)]
    assert other["id"] not in seen

    failed = api.ok(api.get("/deployments", params={"status": "failed"}))["items"]
    assert [d["id"] for d in failed] == [d["id"] for d in reversed(made[:6])]
    pending = api.ok(api.get("/deployments", params={"status": "pending"}))["items"]
    assert [d["id"] for d in pending] == [other["id"], made[6]["id"]]
    both = api.ok(api.get("/deployments", params={"status": ["failed", "pending"]}))["items"]
    assert len(both) == 8
    by_env = api.ok(api.get("/deployments", params={"environment": "prod"}))["items"]
    assert len(by_env) == 8
    middle = made[3]["created_at"]
    since = api.ok(api.get("/deployments", params={"service": "web", "since": middle}))["items"]
    assert [d["id"] for d in since] == [d["id"] for d in reversed(made[3:])]
    until = api.ok(api.get("/deployments", params={"service": "web", "until": middle}))["items"]
    assert [d["id"] for d in until] == [d["id"] for d in reversed(made[:3])]
    bad = api.get("/deployments", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "cursor"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
def test_requests_without_a_valid_token_are_401(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = api.client.get("/api/v1/environments", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_revoked_and_listed_tokens(api: Api) -> None:
    issued = api.ok(api.post("/tokens", {"name": "ci", "expires_in_days": 30}), 201)
    assert issued["token"].startswith("ph_") and issued["expires_at"]
    listed = api.ok(api.get("/tokens"))
    assert all("token" not in t and "token_hash" not in t for t in listed)
    assert issued["token"] not in str(listed)
    assert api.as_(issued["token"]).get("/users/me").status_code == 200
    api.ok(api.delete(f"/tokens/{issued['id']}"))
    assert api.as_(issued["token"]).get("/users/me").status_code == 401
    assert api.delete(f"/tokens/{issued['id']}").status_code == 409


def test_openapi_describes_every_route_and_field(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary") or op.get("description"), (method, path)
    for name, schema in spec["components"]["schemas"].items():
        if name.startswith(("HTTPValidationError", "ValidationError")):
            continue
        for field, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"


def test_nul_bytes_are_a_client_error_not_a_crash(api: Api, db_url: str) -> None:
    """Found by the schema fuzzer: PostgreSQL text cannot hold NUL; both stores refuse it alike."""
    response = api.get("/audit", params={"entity_id": "a\x00b"})
    assert response.status_code == 422 and "NUL" in response.json()["message"]
    assert response.json()["detail"] == [
        {"field": "entity_id", "rule": "must not contain the NUL character (\\u0000)"}
    ]
