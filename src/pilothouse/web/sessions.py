"""Dashboard logins: an API token entered once opens a session held in a cookie.

The cookie carries 256 random bits; the store keeps only their SHA-256 (like API tokens). A
session acts as the token it was opened with and is checked against it on every request, so
revoking the token, expiring it or deactivating its user ends the session at once. CSRF tokens
are derived from the session's secret with HMAC-SHA256, so a form needs no stored token and a
token is useless without the cookie it belongs to.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.errors import Unauthorized
from pilothouse.users import service as users
from pilothouse.users.models import ApiToken, User
from pilothouse.web.models import WebSession

#: last_seen_at is kept to the minute so page views don't each cost a write.
SEEN_RESOLUTION = timedelta(minutes=1)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def csrf_token(secret: str) -> str:
    """The CSRF token of the session whose cookie holds `secret`."""
    return hmac.new(secret.encode(), b"pilothouse-csrf", hashlib.sha256).hexdigest()


def same_token(sent: str, expected: str) -> bool:
    """Constant-time equality of a token the client sent and the expected one, compared as
    bytes: whatever characters the client sent, the answer is False, never an error."""
    return hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def csrf_ok(secret: str, sent: str | None) -> bool:
    """True when `sent` is the session's CSRF token (constant-time comparison)."""
    return sent is not None and same_token(sent, csrf_token(secret))


async def open_session(
    session: AsyncSession, token: str, *, hours: float
) -> tuple[WebSession, str, Principal]:
    """Log in with an API token: the new session row, the cookie secret and the principal.
    Refused like the API refuses the token (Unauthorized; ingest tokens are Forbidden)."""
    principal, row = await users.authenticate(session, token.strip())
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    web = WebSession(
        token_id=row.id,
        secret_hash=digest(secret),
        created_at=now,
        expires_at=now + timedelta(hours=hours),
        last_seen_at=now,
    )
    if row.expires_at is not None:
        web.expires_at = min(web.expires_at, row.expires_at)
    session.add(web)
    await session.flush()
    audit.record(session, principal, "login", "web_session", web.id, {"token": row.prefix})
    return web, secret, principal


async def principal_for(session: AsyncSession, secret: str) -> tuple[Principal, WebSession]:
    """The principal behind a session cookie, or Unauthorized (expired, logged out, or its
    token revoked or expired, or its user deactivated)."""
    found = (
        await session.execute(
            sa.select(WebSession, ApiToken, User)
            .join(ApiToken, ApiToken.id == WebSession.token_id)
            .join(User, User.id == ApiToken.user_id)
            .where(WebSession.secret_hash == digest(secret))
        )
    ).first()
    now = utcnow()
    if found is None:
        raise Unauthorized("not logged in")
    web, token, user = found
    if (
        web.expires_at <= now
        or token.revoked_at is not None
        or (token.expires_at is not None and token.expires_at <= now)
        or not user.is_active
        or token.scope is not None
    ):
        raise Unauthorized("the session has ended; log in again")
    return Principal(id=user.id, name=user.name, role=user.role), web


def needs_touch(web: WebSession) -> bool:
    return utcnow() - web.last_seen_at >= SEEN_RESOLUTION


async def touch(session: AsyncSession, web_id: object) -> None:
    await session.execute(
        sa.update(WebSession).where(WebSession.id == web_id).values(last_seen_at=utcnow())
    )


async def close_session(session: AsyncSession, secret: str) -> bool:
    """Log out: delete the session (True when there was one)."""
    web = await session.scalar(
        sa.select(WebSession).where(WebSession.secret_hash == digest(secret))
    )
    if web is None:
        return False
    await session.delete(web)
    return True


async def prune(session: AsyncSession) -> int:
    """Delete expired sessions and those of revoked tokens; returns how many."""
    now = utcnow()
    revoked = sa.select(ApiToken.id).where(ApiToken.revoked_at.is_not(None))
    done = await session.execute(
        sa.delete(WebSession).where(
            sa.or_(WebSession.expires_at <= now, WebSession.token_id.in_(revoked))
        )
    )
    return int(getattr(done, "rowcount", 0) or 0)
