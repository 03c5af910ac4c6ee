"""Bad input is a 422 naming the field (or a 413), never a 500, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pilothouse.alerts.models import NotificationChannel
from pilothouse.app import create_app
from pilothouse.config import Settings
from pilothouse.core.db import Database
from tests.conftest import Api

NUL = "a\x00b"
SURROGATE = "a\ud800b"


def fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_failed", body
    return [d["field"] for d in body["detail"]]


def send(api: Api, method: str, path: str, body: Any) -> Any:
    """Send a JSON body as raw text (json.dumps escapes a lone surrogate as \\ud800)."""
    return api.client.request(
        method,
        f"/api/v1{path}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"},
    )


# --- item 9: explicit null for fields that cannot be null ---


@pytest.mark.parametrize(
    "field", ["config", "features", "limits", "type", "driver", "is_active", "name"]
)
def test_environment_patch_with_null_names_the_field(
    api: Api, world: dict[str, Any], field: str
) -> None:
    response = api.patch("/environments/prod", {field: None})
    if field == "name":  # not a PATCH field at all
        assert "name" in fields(response)
        return
    assert fields(response) == [field]
    assert "null" in response.json()["detail"][0]["rule"]
    # Nothing changed, and the environment still reads back.
    assert api.ok(api.get("/environments/prod"))["name"] == "prod"


def test_environment_patch_null_domain_still_clears_it(api: Api, world: dict[str, Any]) -> None:
    api.ok(api.patch("/environments/prod", {"domain": "example.org"}))
    assert api.ok(api.patch("/environments/prod", {"domain": None}))["domain"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"driver_config": None},
        {"health_check": None},
        {"resources": None},
        {"resources": {"cpu_cores": None}},
    ],
)
def test_service_patch_with_null_names_the_field(
    api: Api, world: dict[str, Any], body: dict[str, Any]
) -> None:
    response = api.patch("/services/web", body)
    field = next(iter(body))
    inner = body[field]
    expected = f"{field}.{next(iter(inner))}" if isinstance(inner, dict) else field
    assert fields(response) == [expected]
    assert api.ok(api.get("/services/web"))["name"] == "web"


def test_other_update_schemas_refuse_null_for_required_columns(
    api: Api, world: dict[str, Any]
) -> None:
    api.ok(
        api.post(
            "/backup-targets?check=false",
            {"name": "db", "dsn": "sqlite:////tmp/x.db", "schedule": ""},
        ),
        201,
    )
    for body in ({"max_retries": None}, {"enabled": None}, {"storage": None}, {"dsn": None}):
        response = api.patch("/backup-targets/db", body)
        assert fields(response) == [next(iter(body))], body
    assert api.ok(api.get("/backup-targets/db"))["enabled"] is True


# --- item 9: NUL and lone surrogates anywhere in a request ---

TEXT_CASES = [
    ("PUT", "/environments/prod/vars/TOKEN", {"value": "{bad}"}, "value"),
    ("POST", "/environments/prod/vars-import", {"values": {"A": "{bad}"}}, "values.A"),
    ("POST", "/environments/prod/vars-import", {"values": {"{bad}": "x"}}, "values"),
    (
        "PUT",
        "/environments/prod/requirements/TOKEN",
        {"rule": "regex", "args": {"pattern": "{bad}"}},
        "args.pattern",
    ),
    ("POST", "/backup-targets", {"name": "db", "dsn": "postgresql://u@h/{bad}"}, "dsn"),
    ("PATCH", "/environments/prod", {"config": {"nested": ["ok", "{bad}"]}}, "config.nested.1"),
    ("PATCH", "/environments/prod", {"domain": "{bad}"}, "domain"),
    ("POST", "/environments", {"name": "{bad}"}, "name"),
    ("PATCH", "/services/web", {"command": "run {bad}"}, "command"),
    ("PATCH", "/services/web", {"health_check": {"path": "/{bad}"}}, "health_check.path"),
]


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(("method", "path", "body", "field"), TEXT_CASES)
def test_nul_and_lone_surrogates_are_refused_naming_the_field(
    api: Api,
    world: dict[str, Any],
    bad: str,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    text = json.dumps(body).replace("{bad}", json.dumps(bad)[1:-1])
    response = api.client.request(
        method,
        f"/api/v1{path}",
        content=text.encode(),
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"},
    )
    assert fields(response) == [field]
    rule = response.json()["detail"][0]["rule"]
    assert ("NUL" in rule) if bad == NUL else ("surrogate" in rule), rule


@pytest.mark.parametrize("content_type", ["Application/JSON", None], ids=["mixed-case", "none"])
def test_a_json_body_is_checked_whatever_its_content_type_says(
    api: Api, content_type: str | None
) -> None:
    # FastAPI parses a body as JSON with no content type, and matches the type in any case;
    # the check once looked only at a lowercase JSON type, so these bodies skipped it.
    headers = {"Authorization": f"Bearer {api.token}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = api.client.post(
        "/api/v1/environments",
        content=json.dumps({"name": "a" + NUL + "b", "type": "staging"}).encode(),
        headers=headers,
    )
    assert fields(response) == ["name"], response.text


@pytest.mark.parametrize("content_type", ["application/json", None], ids=["json", "none"])
def test_a_body_nested_past_what_the_decoder_can_read_is_a_422(
    api: Api, content_type: str | None
) -> None:
    # 3,000 levels: json.loads gives up with a RecursionError (not a ValueError), which the
    # text check let through as a 500 when the body came with no content type.
    headers = {"Authorization": f"Bearer {api.token}"}
    if content_type:
        headers["Content-Type"] = content_type
    body = b'{"name": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    for path in ("/api/v1/environments", "/api/v1/metrics/ingest"):
        response = api.client.post(path, content=body, headers=headers)
        assert response.status_code == 422, response.text
        assert fields(response) == ["body"], response.text


def test_nul_in_query_and_path_is_refused_the_same_on_both_stores(
    api: Api, world: dict[str, Any]
) -> None:
    assert fields(api.get("/audit?entity_id=a%00b")) == ["entity_id"]
    assert fields(api.get("/environments/a%00b")) == ["ref"]
    # Bytes that are not UTF-8 (here an encoded surrogate) are decoded as U+FFFD by the server.
    assert api.ok(api.get("/audit?entity_id=a%ED%A0%80b")) == []
    assert api.get("/environments/a%ED%A0%80b").status_code == 404


def test_body_that_is_not_utf8_is_a_422(api: Api) -> None:
    response = api.client.post(
        "/api/v1/environments",
        content=b'{"name": "\xff\xfe"}',
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"},
    )
    assert fields(response) == ["body"]


# --- item 9: a channel stored with bad settings is tested without a 500 ---


def _store_channel(db_url: str, owner: str, config: dict[str, Any], kind: str) -> str:
    """Insert a channel as an older version (before settings were validated) could have."""
    name = f"old-{uuid.uuid4().hex[:6]}"

    async def insert() -> None:
        db = Database(db_url)
        try:
            async with db.session(write=True) as session:
                session.add(
                    NotificationChannel(
                        owner_id=uuid.UUID(owner), name=name, kind=kind, config=config
                    )
                )
        finally:
            await db.dispose()

    asyncio.run(insert())
    return name


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("email", {"host": "127.0.0.1", "port": "smtp", "to": ["a@example.org"]}, "config.port"),
        ("email", {"host": "127.0.0.1", "port": 25, "to": [1, 2]}, "config.to.0"),
        ("webhook", {"url": "http://[::1"}, "config.url"),
        ("webhook", {"url": "http://"}, "config.url"),
        ("slack", {"url": 42}, "config.url"),
    ],
)
def test_testing_a_badly_configured_channel_is_a_422(
    api: Api, db_url: str, kind: str, config: dict[str, Any], field: str
) -> None:
    me = api.ok(api.get("/users/me"))
    name = _store_channel(db_url, me["id"], config, kind)
    response = api.post(f"/channels/{name}/test")
    assert field in fields(response), response.text


# --- item 12: request limits ---


@pytest.fixture
def small_api(settings: Settings, admin_token: str) -> Iterator[Api]:
    limited = settings.model_copy(update={"max_body_bytes": 4096})
    with TestClient(create_app(limited, migrate=False)) as client:
        yield Api(client, admin_token)


def test_body_over_the_default_limit_is_a_413_with_the_json_error_body(api: Api) -> None:
    big = {"name": "huge", "config": {"blob": "x" * (1024 * 1024)}}
    response = api.post("/environments", big)
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["error"] == "payload_too_large"
    assert "1048576" in body["message"]
    assert api.get("/environments/huge").status_code == 404


def test_body_limit_is_configurable_and_counts_chunked_bodies(small_api: Api) -> None:
    api = small_api

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "chunked", "config": {"blob": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    response = api.client.post(
        "/api/v1/environments",
        content=chunks(),
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert api.ok(api.post("/environments", {"name": "small"}), 201)["name"] == "small"


@pytest.mark.parametrize(
    ("path", "method", "body", "field"),
    [
        ("/environments", "POST", {"name": "big", "config": {"k": "x" * 70_000}}, "config"),
        ("/environments/prod", "PATCH", {"config": {"k": "x" * 70_000}}, "config"),
        (
            "/environments/prod",
            "PATCH",
            {"features": {f"f{i:05}": True for i in range(5000)}},
            "features",
        ),
        ("/services/web", "PATCH", {"driver_config": {"k": "x" * 70_000}}, "driver_config"),
        ("/services/web", "PATCH", {"health_check": {"k": "x" * 70_000}}, "health_check"),
    ],
)
def test_json_settings_fields_are_limited_to_64_kib(
    api: Api, world: dict[str, Any], path: str, method: str, body: dict[str, Any], field: str
) -> None:
    response = send(api, method, path, body)
    assert fields(response) == [field]
    assert "65536" in response.json()["detail"][0]["rule"]


def test_method_not_allowed_lists_every_method_of_the_path(api: Api, world: dict[str, Any]) -> None:
    response = api.client.request("PUT", "/api/v1/environments/prod")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert set(response.headers["allow"].split(", ")) >= {"GET", "PATCH", "DELETE"}


def test_datetime_query_parameters_must_be_iso_8601(api: Api) -> None:
    assert fields(api.get("/deployments?until=0.5")) == ["until"]
    assert api.ok(api.get("/deployments?until=2030-01-01T00:00:00Z"))["items"] == []


def test_numbers_beyond_their_column_are_a_422_naming_the_field(
    api: Api, world: dict[str, Any]
) -> None:
    body = {"service": "web", "version": "v9.0.0", "commit_sha": "a" * 40, "size_mb": 10**20}
    assert fields(api.post("/artifacts", body)) == ["size_mb"]
    api.client.put(
        "/api/v1/environments/prod/vars/A",
        json={"value": "x"},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert fields(api.post("/environments/prod/vars/A/revert", {"to": 10**20})) == ["to"]


def test_every_route_declares_the_error_body_it_returns(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, operation in operations.items():
            for status in ("401", "403", "404", "409", "413", "422", "503"):
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (
                    method,
                    path,
                    status,
                )
    missing = api.client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "Not Found", "detail": None}


def test_text_longer_than_its_column_is_refused_alike_on_both_stores(api: Api) -> None:
    minutes = ",".join(str(m) for m in range(60))  # a valid cron expression of 177 characters
    body = {"name": "db", "dsn": "sqlite:////tmp/x.db", "schedule": f"{minutes} * * * *"}
    assert fields(api.post("/backup-targets?check=false", body)) == ["schedule"]
    long_dsn = "postgresql://u@h/" + "d" * 1000
    assert fields(api.post("/backup-targets?check=false", {"name": "db", "dsn": long_dsn})) == [
        "dsn"
    ]
