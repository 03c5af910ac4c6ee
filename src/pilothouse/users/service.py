"""Users and API tokens. Tokens are 256-bit random strings; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import (
    DEPLOYER,
    DEPLOYER_TOKEN_DAYS,
    DEPLOYER_TOKEN_MAX_DAYS,
    INGEST,
    Principal,
    require,
)
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.db import id_or_name, one_by_ref
from pilothouse.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from pilothouse.users.models import ApiToken, User

TOKEN_PREFIX = "ph_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    """SHA-256 hex: tokens are high-entropy, so a fast hash suffices and keeps auth cheap."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def get_user(session: AsyncSession, ref: str | uuid.UUID) -> User:
    """A user by id or name, or NotFound."""
    try:
        user_id = ref if isinstance(ref, uuid.UUID) else uuid.UUID(ref)
        user = await session.get(User, user_id)
    except ValueError:
        user = await session.scalar(sa.select(User).where(User.name == ref))
    if user is None:
        raise NotFound(f"user {ref!s} not found")
    return user


async def create_user(
    session: AsyncSession, actor: Principal, *, name: str, role: str, email: str | None = None
) -> User:
    """Create a user (admin only); names are unique."""
    require(actor, "manage_users")
    if await session.scalar(sa.select(User.id).where(User.name == name)):
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, role=role, email=email)
    session.add(user)
    await session.flush()
    audit.record(session, actor, "create", "user", user.id, {"name": name, "role": role})
    return user


async def bootstrap_admin(session: AsyncSession, name: str = "admin") -> tuple[User, str]:
    """First start: create the admin user and its token (no caller exists yet)."""
    user = User(name=name, role="admin")
    session.add(user)
    await session.flush()
    system = Principal(id=user.id, name=name, role="admin")
    audit.record(session, system, "create", "user", user.id, {"name": name, "role": "admin"})
    _, token = await _issue(session, system, user, name="init", expires_in_days=None)
    return user, token


async def list_users(session: AsyncSession, actor: Principal) -> Sequence[User]:
    require(actor, "manage_users")
    return (await session.scalars(sa.select(User).order_by(User.created_at))).all()


async def _issue(
    session: AsyncSession,
    actor: Principal,
    user: User,
    *,
    name: str,
    expires_in_days: int | None,
    scope: str | None = None,
    environment_id: uuid.UUID | None = None,
) -> tuple[ApiToken, str]:
    if user.role == DEPLOYER:
        expires_in_days = expires_in_days or DEPLOYER_TOKEN_DAYS
        if expires_in_days > DEPLOYER_TOKEN_MAX_DAYS:
            raise ValidationFailed(
                "expires_in_days",
                f"a deployer's token lives at most {DEPLOYER_TOKEN_MAX_DAYS} days",
            )
    token = new_token()
    now = utcnow()
    row = ApiToken(
        user_id=user.id,
        name=name,
        prefix=token[:10],
        token_hash=hash_token(token),
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        scope=scope,
        environment_id=environment_id,
    )
    session.add(row)
    await session.flush()
    what = {"user": user.name, "name": name}
    if scope:
        what.update(scope=scope, environment_id=str(environment_id))
    audit.record(session, actor, "create", "api_token", row.id, what)
    return row, token


async def create_token(
    session: AsyncSession,
    actor: Principal,
    *,
    user_ref: str | None,
    name: str,
    expires_in_days: int | None = None,
    ingest_environment: str | None = None,
) -> tuple[ApiToken, str]:
    """Issue a token (admin only); returns the row and the plaintext, which is never stored.
    With `ingest_environment` (an environment name or id) the token is an ingest token: it may
    push metrics into that environment and do nothing else."""
    require(actor, "manage_tokens")
    user = await get_user(session, user_ref or actor.id)
    environment_id = None
    if ingest_environment is not None:
        from pilothouse.environments.models import Environment

        env = await session.scalar(
            sa.select(Environment).where(
                id_or_name(Environment.id, Environment.name, ingest_environment),
                Environment.deleted_at.is_(None),
            )
        )
        if env is None:
            raise NotFound(f"environment {ingest_environment!r} not found")
        environment_id = env.id
    return await _issue(
        session,
        actor,
        user,
        name=name,
        expires_in_days=expires_in_days,
        scope=INGEST if environment_id else None,
        environment_id=environment_id,
    )


async def list_tokens(
    session: AsyncSession, actor: Principal, *, user_ref: str | None = None
) -> Sequence[ApiToken]:
    require(actor, "manage_tokens")
    query = sa.select(ApiToken).order_by(ApiToken.created_at)
    if user_ref:
        query = query.where(ApiToken.user_id == (await get_user(session, user_ref)).id)
    return (await session.scalars(query)).all()


async def revoke_token(session: AsyncSession, actor: Principal, token_ref: str) -> ApiToken:
    """Revoke a token by id or unique id prefix; revoking twice is a conflict."""
    require(actor, "manage_tokens")
    row: ApiToken = await one_by_ref(
        session, sa.select(ApiToken).order_by(ApiToken.id), ApiToken.id, token_ref, "token"
    )
    if row.revoked_at is not None:
        raise Conflict(f"token {row.id} is already revoked")
    row.revoked_at = utcnow()
    audit.record(session, actor, "revoke", "api_token", row.id, {"name": row.name})
    return row


async def authenticate(
    session: AsyncSession, token: str, *, allow_ingest: bool = False
) -> tuple[Principal, ApiToken]:
    """The principal behind a bearer token, or Unauthorized (never says which part was wrong).
    An ingest token authenticates only where `allow_ingest` (the metric push routes); anywhere
    else it is Forbidden, so it can do nothing but push."""
    found = (
        await session.execute(
            sa.select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_token(token))
        )
    ).first()
    now = utcnow()
    if found is None:
        raise Unauthorized("invalid or missing API token")
    row, user = found
    if row.revoked_at is not None or (row.expires_at and row.expires_at <= now):
        raise Unauthorized("invalid or missing API token")
    if not user.is_active:
        raise Unauthorized("invalid or missing API token")
    if row.scope == INGEST:
        if not allow_ingest:
            raise Forbidden(
                "an ingest token may only push metrics (POST /api/v1/metrics/ingest)",
                detail={"role": INGEST},
            )
        principal = Principal(
            id=user.id, name=user.name, role=INGEST, environment_id=row.environment_id
        )
        return principal, row
    return Principal(id=user.id, name=user.name, role=user.role), row


def needs_touch(row: ApiToken) -> bool:
    """last_used_at is kept to the minute so reads don't each cost a write."""
    return row.last_used_at is None or utcnow() - row.last_used_at >= LAST_USED_RESOLUTION


async def touch_token(session: AsyncSession, token_id: uuid.UUID) -> None:
    await session.execute(
        sa.update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow())
    )
