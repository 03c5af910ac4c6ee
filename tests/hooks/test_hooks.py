"""Deploy hooks through the API: a signed push registers and deploys, replays and bad
signatures are refused, every call is audited, the secret never comes back."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import sqlalchemy as sa

from pilothouse.config import Settings
from pilothouse.core.crypto import load_keyring, rotate_key_file
from pilothouse.core.db import Database
from pilothouse.hooks.models import DeployHook
from pilothouse.hooks.signature import sign
from pilothouse.rotation import reseal_all
from tests.conftest import SHA, Api, one_store

SECRET = "hook-secret-0123456789"
OTHER_SHA = "b" * 40


def send(
    api: Api, name: str, event: str, payload: dict[str, Any], delivery: str, secret: str = SECRET
) -> Any:
    body = json.dumps(payload).encode()
    headers = {
        "X-Hub-Signature-256": sign(secret, body),
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }
    return api.client.post(f"/api/v1/hooks/{name}", content=body, headers=headers)


def make_hook(api: Api) -> dict[str, Any]:
    return api.ok(  # type: ignore[no-any-return]
        api.post(
            "/hooks",
            {
                "name": "gh",
                "secret": SECRET,
                "rules": [
                    {"tag": "v*", "environment": "prod", "service": "web"},
                    {"branch": "main", "environment": "prod", "service": "web"},
                ],
            },
        ),
        201,
    )


def test_replayed_delivery_is_refused(api: Api, world: dict[str, Any]) -> None:
    """Delivery ids are remembered in the store (a unique key): on both stores."""
    make_hook(api)
    push = {"ref": "refs/heads/main", "after": SHA, "head_commit": {"message": "fix login"}}
    first = send(api, "gh", "push", push, "delivery-1")
    assert first.status_code == 202 and first.json()["outcome"] == "deployed", first.text
    again = send(api, "gh", "push", push, "delivery-1")
    assert again.status_code == 409 and "replay" in again.json()["message"]


@one_store
def test_signed_push_registers_and_deploys(api: Api, world: dict[str, Any]) -> None:
    created = make_hook(api)
    assert "secret" not in json.dumps(created) and SECRET not in json.dumps(
        api.ok(api.get("/hooks"))
    )

    tag = send(api, "gh", "push", {"ref": "refs/tags/v9.0.0", "after": OTHER_SHA}, "d-tag")
    assert tag.status_code == 202, tag.text
    result = tag.json()
    assert result["outcome"] == "deployed" and result["version"] == "v9.0.0"
    dep = api.ok(api.get(f"/deployments/{result['deployment_id']}"))
    assert dep["version"] == "v9.0.0" and dep["commit_sha"] == OTHER_SHA
    assert dep["operator"] == "hook:gh" and dep["triggered_by"] == "github_action"

    ignored = send(api, "gh", "push", {"ref": "refs/heads/dev", "after": SHA}, "d-dev")
    assert ignored.status_code == 202 and ignored.json()["outcome"].startswith("ignored: no rule")
    assert send(api, "gh", "ping", {"zen": "hi"}, "d-ping").json()["outcome"] == "ignored: ping"

    forged = send(
        api,
        "gh",
        "push",
        {"ref": "refs/tags/v9.9.9", "after": SHA},
        "d-x",
        secret="not-the-secret-at-all",
    )
    assert forged.status_code == 401
    assert send(api, "nope", "push", {}, "d-y").status_code == 404

    # the generic format: a signed timestamp, refused when stale
    body = json.dumps({"ref": "refs/heads/main", "commit": SHA, "version": "build-7"}).encode()
    stale = str(int(time.time()) - 3600)
    old = api.client.post(
        "/api/v1/hooks/gh",
        content=body,
        headers={
            "X-Pilothouse-Signature": sign(SECRET, body, stale),
            "X-Pilothouse-Timestamp": stale,
            "X-Pilothouse-Delivery": "g-1",
        },
    )
    assert old.status_code == 401 and "timestamp" in old.json()["message"]

    calls = [
        e
        for e in api.ok(api.get("/audit", params={"entity_type": "deploy_hook"}))
        if e["action"] == "hook_call"
    ]
    statuses = sorted(e["changes"]["status"] for e in calls)
    assert statuses == [202, 202, 202, 401, 401, 404]
    assert all(SECRET not in json.dumps(e) for e in calls)
    # an operator may not create hooks (they deploy without a token)
    otto = api.as_(api.user("otto", "operator"))
    refused = otto.post(
        "/hooks",
        {
            "name": "x",
            "secret": SECRET,
            "rules": [{"branch": "main", "environment": "prod", "service": "web"}],
        },
    )
    assert refused.status_code == 403


@one_store
def test_key_rotation_reseals_hook_secrets(
    api: Api, world: dict[str, Any], settings: Settings, db_url: str
) -> None:
    make_hook(api)
    rotate_key_file(settings.master_key_path)
    ring = load_keyring(None, settings.master_key_path)

    async def rotate() -> tuple[int, set[str]]:
        db = Database(db_url)
        try:
            count = await reseal_all(db, ring)
            async with db.session(write=False) as session:
                ids = set(await session.scalars(sa.select(DeployHook.key_id)))
            return count, ids
        finally:
            await db.dispose()

    count, ids = asyncio.run(rotate())
    assert count >= 1 and ids == {ring.current.hex()}
    delivered = send(api, "gh", "push", {"ref": "refs/heads/main", "after": SHA}, "after-rotation")
    assert delivered.status_code == 202, delivered.text
