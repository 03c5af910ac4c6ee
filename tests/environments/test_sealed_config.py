"""Issue 11.4: credentials inside an environment's config (dependency URLs, config.env values)
are sealed at rest and masked in API answers and audit entries; probes and deployments get
them in clear; a read, edit, write round trip keeps them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse.config import Settings
from pilothouse.core.crypto import load_keyring
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.environments.models import Environment
from pilothouse.setup import ensure_master_key
from pilothouse.variables import service as variables
from tests.conftest import Api

PG_PW = "sntl-pgpw-41ab"
REDIS_PW = "sntl-redispw-99"
UPSTREAM_PW = "sntl-upstream-7f"
API_KEY = "sntl-apikey-0d"
CONFIG = {
    "database_url": f"postgresql://app:{PG_PW}@127.0.0.1:5432/app",
    "redis_url": f"redis://:{REDIS_PW}@127.0.0.1:6379/0",
    "dependency_interval": 30,
    "env": {
        "UPSTREAM": f"https://svc:{UPSTREAM_PW}@api.example.com/v1",
        "PAYMENTS_API_KEY": API_KEY,
        "MODE": "fast",
    },
}
SECRETS = (PG_PW, REDIS_PW, UPSTREAM_PW, API_KEY)


@pytest.fixture(autouse=True)
def _key(settings: Settings) -> None:
    ensure_master_key(settings.master_key_path)


async def _stored(db_url: str, name: str) -> Environment:
    db = Database(db_url)
    try:
        async with db.session() as session:
            env = await session.scalar(sa.select(Environment).where(Environment.name == name))
            assert env is not None
            return env
    finally:
        await db.dispose()


def test_config_credentials_sealed_masked_and_opened(
    api: Api, settings: Settings, db_url: str
) -> None:
    created = api.ok(api.post("/environments", {"name": "prod", "config": CONFIG}), 201)
    assert created["config"]["database_url"] == "postgresql://app:***@127.0.0.1:5432/app"
    assert created["config"]["redis_url"] == "redis://:***@127.0.0.1:6379/0"
    assert created["config"]["env"]["MODE"] == "fast"
    assert created["config"]["env"]["PAYMENTS_API_KEY"] == "***"
    shown = " ".join(
        api.get(p).text for p in ("/environments", "/environments/prod", "/audit?limit=100")
    )
    for secret in SECRETS:
        assert secret not in shown

    env = asyncio.run(_stored(db_url, "prod"))
    assert not any(s in repr(env.config) + str(env.config_sealed) for s in SECRETS)
    keyring = load_keyring(None, settings.master_key_path)
    assert environments.open_config(env, keyring) == CONFIG

    # read, edit, write: the masked values come back unchanged and keep their passwords
    edited = {**created["config"], "dependency_interval": 60}
    api.ok(api.patch("/environments/prod", {"config": edited}))
    env = asyncio.run(_stored(db_url, "prod"))
    assert environments.open_config(env, keyring) == {**CONFIG, "dependency_interval": 60}
    # a new password replaces the old one
    api.ok(
        api.patch(
            "/environments/prod",
            {"config": {**edited, "redis_url": "redis://:another-pw@127.0.0.1:6379/0"}},
        )
    )
    env = asyncio.run(_stored(db_url, "prod"))
    assert environments.open_config(env, keyring)["redis_url"].endswith(
        ":another-pw@127.0.0.1:6379/0"
    )


def test_deployments_receive_config_env_in_clear_and_scrub_it(
    api: Api, settings: Settings, db_url: str
) -> None:
    api.ok(api.post("/environments", {"name": "prod", "config": CONFIG}), 201)
    keyring = load_keyring(None, settings.master_key_path)

    async def delivery() -> Any:
        db = Database(db_url)
        try:
            async with db.session() as session:
                env = await session.scalar(sa.select(Environment).where(Environment.name == "prod"))
                assert env is not None
                return await variables.for_deployment(session, keyring, env, None)
        finally:
            await db.dispose()

    got = asyncio.run(delivery())
    assert got.values["UPSTREAM"] == CONFIG["env"]["UPSTREAM"]
    assert CONFIG["env"]["UPSTREAM"] in got.secrets
    assert got.values["PAYMENTS_API_KEY"] == API_KEY and API_KEY in got.secrets


def test_a_dependency_can_reference_a_secret_variable(
    api: Api, settings: Settings, db_url: str
) -> None:
    config = {"database_url": "${DATABASE_URL}", "redis_url": "${NOT_SET}"}
    api.ok(api.post("/environments", {"name": "prod", "config": config}), 201)
    dsn = f"postgresql://app:{PG_PW}@127.0.0.1:5432/app"
    api.ok(
        api.client.put(
            "/api/v1/environments/prod/vars/DATABASE_URL",
            json={"value": dsn},
            headers={"Authorization": f"Bearer {api.token}"},
        )
    )
    assert api.ok(api.get("/environments/prod/vars"))[0]["is_secret"] is True
    keyring = load_keyring(None, settings.master_key_path)

    async def resolved() -> dict[str, Any]:
        env = await _stored(db_url, "prod")
        db = Database(db_url)
        try:
            return await variables.dependency_config(db, env, keyring)
        finally:
            await db.dispose()

    assert asyncio.run(resolved()) == {"database_url": dsn, "redis_url": "${NOT_SET}"}
