"""Ids shown in tables are accepted as input: a unique prefix (git style, at least 4 hex
characters) of a deployment, replica, backup or token id; an ambiguous one lists candidates."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from pilothouse.access import Principal, system_actor
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.errors import Conflict, NotFound
from pilothouse.replicas import service as replicas
from pilothouse.setup import ensure_master_key
from pilothouse.users import service as users
from pilothouse.users.models import ApiToken
from tests.conftest import Api


def test_deployment_by_prefix_and_isolation(api: Api, world: dict[str, Any]) -> None:
    dep = api.ok(api.post("/deployments", {"service": "web", "version": "v1.0.0"}), 201)
    for prefix in (dep["id"][:8], dep["id"][:13], dep["id"].replace("-", "")[:12].upper()):
        assert api.ok(api.get(f"/deployments/{prefix}"))["id"] == dep["id"]
    assert api.ok(api.get(f"/deployments/{dep['id'][:8]}/logs"))["items"] == []
    # too short to be a prefix: not found, never a guess
    assert api.get(f"/deployments/{dep['id'][:3]}").status_code == 404
    # another operator without access: 404, as if absent
    bob = api.as_(api.user("bob", "operator"))
    response = bob.get(f"/deployments/{dep['id'][:8]}")
    assert response.status_code == 404, response.text
    assert dep["id"] not in response.text


def test_token_revoke_by_prefix(api: Api) -> None:
    token = api.ok(api.post("/tokens", {"name": "ci"}), 201)
    revoked = api.ok(api.delete(f"/tokens/{token['id'][:6]}"))
    assert revoked["id"] == token["id"] and revoked["revoked_at"]


async def test_ambiguous_prefix_lists_candidates(db: Database, admin: Principal) -> None:
    ids = [
        uuid.UUID("abcd0000-0000-4000-8000-000000000001"),
        uuid.UUID("abcd1111-0000-4000-8000-000000000002"),
    ]
    async with db.session() as session:
        for n, ident in enumerate(ids):
            session.add(
                ApiToken(
                    id=ident,
                    user_id=admin.id,
                    name=f"t{n}",
                    prefix="ph_x",
                    token_hash=f"{n}" * 64,
                    created_at=utcnow(),
                )
            )
    async with db.session() as session:
        with pytest.raises(Conflict) as caught:
            await users.revoke_token(session, admin, "abcd")
        assert "abcd0000" in caught.value.message and "abcd1111" in caught.value.message
        assert caught.value.status == 409
        assert (await users.revoke_token(session, admin, "abcd1")).id == ids[1]
        with pytest.raises(NotFound):
            await users.revoke_token(session, admin, "abce")


def test_replica_history_by_prefix_and_isolation(
    api: Api, world: dict[str, Any], settings: Settings
) -> None:
    async def make() -> uuid.UUID:
        db = Database(settings.effective_database_url())
        try:
            async with db.session() as session:
                replica = await replicas.create_replica(
                    session, uuid.UUID(world["service"]["id"]), actor=system_actor()
                )
                return replica.id
        finally:
            await db.dispose()

    replica_id = str(asyncio.run(make()))
    rows = api.ok(api.get(f"/history/replica/{replica_id[:8]}"))
    assert [r["to_status"] for r in rows] == ["pending"]
    bob = api.as_(api.user("bob", "operator"))
    assert bob.get(f"/history/replica/{replica_id[:8]}").status_code == 404


def test_backup_by_prefix_and_isolation(api: Api, settings: Settings, tmp_path: Path) -> None:
    ensure_master_key(settings.master_key_path)
    source = tmp_path / "app.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    conn.close()
    api.ok(api.post("/backup-targets", {"name": "app-db", "dsn": f"sqlite:///{source}"}), 201)
    queued = api.ok(api.post("/backup-targets/app-db/backups", {"reason": "x"}), 202)
    assert api.ok(api.get(f"/backups/{queued['id'][:8]}"))["id"] == queued["id"]
    assert api.ok(api.get(f"/history/backup/{queued['id'][:8]}"))
    bob = api.as_(api.user("bob", "operator"))
    assert bob.get(f"/backups/{queued['id'][:8]}").status_code == 404
