"""Environments: create, read, update, soft delete, and grants (admin manages them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, granted_environment_ids, require, visible
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import CryptoError, Keyring
from pilothouse.core.db import id_or_name
from pilothouse.core.keys import process_keyring
from pilothouse.drivers import registry
from pilothouse.environments import sealing
from pilothouse.environments.models import Environment, EnvironmentGrant
from pilothouse.errors import Conflict, NotFound, PilothouseError
from pilothouse.services.models import Service
from pilothouse.users import service as users


class KeyUnavailable(PilothouseError):
    """Credentials to seal or open, and no master key."""

    status = 503
    code = "key_unavailable"


def _visible(actor: Principal) -> sa.ColumnElement[bool]:
    if actor.is_admin:
        return sa.true()
    return sa.or_(
        Environment.owner_id == actor.id, Environment.id.in_(granted_environment_ids(actor))
    )


async def get_environment(session: AsyncSession, actor: Principal, ref: str) -> Environment:
    """A live environment the actor can see, by id or name; otherwise NotFound."""
    query = sa.select(Environment).where(
        Environment.deleted_at.is_(None),
        _visible(actor),
        id_or_name(Environment.id, Environment.name, ref),
    )
    env = await session.scalar(query)
    if env is None:
        raise NotFound(f"environment {ref!r} not found")
    return env


async def list_environments(session: AsyncSession, actor: Principal) -> Sequence[Environment]:
    query = (
        sa.select(Environment)
        .where(Environment.deleted_at.is_(None), _visible(actor))
        .order_by(Environment.name)
    )
    return (await session.scalars(query)).all()


async def _name_taken(session: AsyncSession, name: str) -> bool:
    query = sa.select(Environment.id).where(
        Environment.name == name, Environment.deleted_at.is_(None)
    )
    return (await session.scalar(query)) is not None


def _seal_config(
    env: Environment, config: dict[str, Any], keyring: Keyring | None
) -> dict[str, Any]:
    """Store `config` with its credentials sealed; returns the masked form (what is shown)."""
    if not env.config_sealed and not sealing.credentials(config):
        env.config, env.config_sealed, env.config_key_id = config, None, None
        return config
    try:
        ring = keyring or process_keyring()
    except CryptoError as exc:
        raise KeyUnavailable(f"config holds credentials to seal, but {exc}") from None
    previous = sealing.opened_values(env.config_sealed, ring) if env.config_sealed else None
    shown, sealed = sealing.seal_config(config, ring, previous=previous)
    env.config = shown
    env.config_sealed = sealed
    env.config_key_id = ring.current.hex() if sealed else None
    return shown


def open_config(env: Environment, keyring: Keyring | None = None) -> dict[str, Any]:
    """The environment's config with its credentials in clear (probes, deployments only).
    Without a usable key, the masked config (a probe then fails to log in, visibly)."""
    if not env.config_sealed:
        return dict(env.config or {})
    try:
        return sealing.open_config(env.config, env.config_sealed, keyring or process_keyring())
    except CryptoError:
        return dict(env.config or {})


async def reseal_batch(session: AsyncSession, keyring: Keyring, *, batch: int = 500) -> int:
    """Re-seal up to `batch` environments' config credentials still sealed with an older key;
    returns how many. `pilothouse keys rotate` calls it until it returns 0."""
    current = keyring.current.hex()
    stale = list(
        await session.scalars(
            sa.select(Environment)
            .where(Environment.config_key_id.is_not(None), Environment.config_key_id != current)
            .limit(batch)
            .with_for_update()
        )
    )
    for env in stale:
        clear = sealing.opened_values(env.config_sealed, keyring)
        env.config_sealed = sealing.reseal(clear, keyring)
        env.config_key_id = current
    return len(stale)


async def create_environment(
    session: AsyncSession,
    actor: Principal,
    *,
    name: str,
    keyring: Keyring | None = None,
    **fields: Any,
) -> Environment:
    """Create an environment (admin); the name must be free among live environments.
    Credentials in `config` (URLs with a password...) are sealed, shown masked."""
    require(actor, "manage_environments")
    if await _name_taken(session, name):
        raise Conflict(f"environment {name!r} already exists")
    config = fields.pop("config", None) or {}
    env = Environment(owner_id=actor.id, name=name, **fields)
    fields["config"] = _seal_config(env, config, keyring)
    session.add(env)
    await session.flush()
    audit.record(session, actor, "create", "environment", env.id, {"name": name, **fields})
    return env


async def update_environment(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    changes: dict[str, Any],
    *,
    keyring: Keyring | None = None,
) -> Environment:
    """Apply the given fields (admin); credentials in a new `config` are sealed."""
    env = await get_environment(session, actor, ref)
    require(actor, "manage_environments")
    if changes.get("driver") not in (None, env.driver):
        await _check_services_fit(session, env, changes["driver"])
    changes = dict(changes)
    if changes.get("config") is not None:
        changes["config"] = _seal_config(env, changes.pop("config"), keyring)
    for key, value in changes.items():
        if key != "config":
            setattr(env, key, value)
    env.updated_at = utcnow()
    audit.record(session, actor, "update", "environment", env.id, changes)
    return env


async def _check_services_fit(session: AsyncSession, env: Environment, driver: str) -> None:
    """Every live service's driver_config must suit the new driver (422 naming the service)."""
    live = await session.scalars(
        sa.select(Service).where(Service.environment_id == env.id, Service.deleted_at.is_(None))
    )
    for svc in live:
        registry.check_config(driver, svc.driver_config or {}, field=f"{svc.name}.driver_config")


async def delete_environment(session: AsyncSession, actor: Principal, ref: str) -> Environment:
    """Soft delete (admin); refused while live services remain in it."""
    env = await get_environment(session, actor, ref)
    require(actor, "manage_environments")
    live = await session.scalar(
        sa.select(sa.func.count())
        .select_from(Service)
        .where(Service.environment_id == env.id, Service.deleted_at.is_(None))
    )
    if live:
        raise Conflict(
            f"environment {env.name!r} still has {live} live service(s); delete them first"
        )
    env.deleted_at = utcnow()
    env.is_active = False
    audit.record(session, actor, "delete", "environment", env.id, {"name": env.name})
    return env


async def grant(session: AsyncSession, actor: Principal, ref: str, user_ref: str) -> None:
    """Let a user see (and by role act on) everything in the environment (admin)."""
    env = await get_environment(session, actor, ref)
    require(actor, "manage_environments")
    user = await users.get_user(session, user_ref)
    if await session.get(EnvironmentGrant, (env.id, user.id)):
        raise Conflict(f"user {user.name!r} already has access to {env.name!r}")
    session.add(
        EnvironmentGrant(
            environment_id=env.id, user_id=user.id, granted_by=actor.id, created_at=utcnow()
        )
    )
    audit.record(session, actor, "grant", "environment", env.id, {"user": user.name})


async def revoke_grant(session: AsyncSession, actor: Principal, ref: str, user_ref: str) -> None:
    env = await get_environment(session, actor, ref)
    require(actor, "manage_environments")
    user = await users.get_user(session, user_ref)
    row = await session.get(EnvironmentGrant, (env.id, user.id))
    if row is None:
        raise NotFound(f"user {user.name!r} has no grant on {env.name!r}")
    await session.delete(row)
    audit.record(session, actor, "revoke_grant", "environment", env.id, {"user": user.name})


__all__ = [
    "create_environment",
    "delete_environment",
    "get_environment",
    "grant",
    "list_environments",
    "open_config",
    "revoke_grant",
    "update_environment",
    "visible",
]
