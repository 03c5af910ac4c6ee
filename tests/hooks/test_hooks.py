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
from pilothouse.users.models import User
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
    # GitHub signs only the body: the same signed body under a new delivery id is a replay too
    renamed = send(api, "gh", "push", push, "delivery-2")
    assert renamed.status_code == 409 and "replay" in renamed.json()["message"], renamed.text
    calls = [
        e["changes"]
        for e in api.ok(api.get("/audit", params={"entity_type": "deploy_hook"}))
        if e["action"] == "hook_call"
    ]
    assert sorted(c["status"] for c in calls) == [202, 409, 409]
    assert {c["delivery"] for c in calls if c["status"] == 409} == {"delivery-1", "delivery-2"}


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
            "X-Pilothouse-Signature": sign(SECRET, body, stale, "g-1"),
            "X-Pilothouse-Timestamp": stale,
            "X-Pilothouse-Delivery": "g-1",
        },
    )
    assert old.status_code == 401 and "timestamp" in old.json()["message"]
    # a signature header that is not ASCII is refused, not a server error
    garbled = api.client.post(
        "/api/v1/hooks/gh",
        content=body,
        headers={"X-Hub-Signature-256": b"sha256=\xe9\xff", "X-GitHub-Delivery": "d-z"},
    )
    assert garbled.status_code == 401, garbled.text

    calls = [
        e
        for e in api.ok(api.get("/audit", params={"entity_type": "deploy_hook"}))
        if e["action"] == "hook_call"
    ]
    statuses = sorted(e["changes"]["status"] for e in calls)
    # the call to an unknown hook is logged, not audited (its name is the caller's choice)
    assert statuses == [202, 202, 202, 401, 401, 401]
    assert all(SECRET not in json.dumps(e) for e in calls)
    assert not any(e["entity_id"] == "nope" for e in calls)
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


@one_store
def test_hook_refused_once_its_owner_is_no_longer_an_active_admin(
    api: Api, world: dict[str, Any], db_url: str
) -> None:
    """A hook acts with its creator's rights: demoted or deactivated, the creator's hooks stop."""
    ada = api.as_(api.user("ada", "admin"))
    ada.ok(
        ada.post(
            "/hooks",
            {
                "name": "ada-hook",
                "secret": SECRET,
                "rules": [{"branch": "main", "environment": "prod", "service": "web"}],
            },
        ),
        201,
    )

    async def change(**values: Any) -> None:
        db = Database(db_url)
        try:
            async with db.session() as session:
                await session.execute(sa.update(User).where(User.name == "ada").values(**values))
        finally:
            await db.dispose()

    push = {"ref": "refs/heads/main", "after": SHA}
    asyncio.run(change(role="operator"))
    demoted = send(api, "ada-hook", "push", push, "o-1")
    assert demoted.status_code == 403, demoted.text
    assert "ada" in demoted.json()["message"] and "admin" in demoted.json()["message"]
    asyncio.run(change(role="admin", is_active=False))
    inactive = send(api, "ada-hook", "push", push, "o-2")
    assert inactive.status_code == 403 and "active" in inactive.json()["message"]
    asyncio.run(change(is_active=True))
    # refused deliveries were not remembered: the same one goes through once the owner is back
    back = send(api, "ada-hook", "push", push, "o-3")
    assert back.status_code == 202 and back.json()["outcome"] == "deployed", back.text
    calls = [
        e["changes"]["status"]
        for e in api.ok(api.get("/audit", params={"entity_type": "deploy_hook"}))
        if e["action"] == "hook_call"
    ]
    assert sorted(calls) == [202, 403, 403]
