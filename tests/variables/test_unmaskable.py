"""A secret too short to be masked is refused with a 422 naming the rule (set and import);
the same value is accepted as a plain variable."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.config import Settings
from pilothouse.setup import ensure_master_key
from tests.conftest import Api


@pytest.fixture(autouse=True)
def _key(settings: Settings) -> None:
    ensure_master_key(settings.master_key_path)


def put(api: Api, key: str, body: dict[str, Any]) -> Any:
    return api.client.put(
        f"/api/v1/environments/prod/vars/{key}",
        json=body,
        headers={"Authorization": f"Bearer {api.token}"},
    )


@pytest.mark.parametrize("value", ["x", "1234567", "abc\ndef", "abcd\nefgh"])
def test_unmaskable_secrets_are_refused(api: Api, world: dict[str, Any], value: str) -> None:
    refused = put(api, "PIN", {"value": value, "is_secret": True})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["field"] == "value"
    assert "masked in output" in refused.text or "line by line" in refused.text
    imported = api.post(
        "/environments/prod/vars-import", {"values": {"PIN": value}, "secret_keys": ["PIN"]}
    )
    assert imported.status_code == 422, imported.text
    assert imported.json()["detail"][0]["field"] == "values.PIN"
    assert api.ok(api.get("/environments/prod/vars")) == []
    assert put(api, "PIN", {"value": value}).status_code == 200  # plain: the caller's choice


def test_maskable_secrets_are_accepted(api: Api, world: dict[str, Any]) -> None:
    assert put(api, "PIN", {"value": "12345678", "is_secret": True}).status_code == 200
    assert put(api, "KEY", {"value": "abcdefgh\nxy", "is_secret": True}).status_code == 200
