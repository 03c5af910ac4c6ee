"""Write and read the audit trail. Callers pass field names, never secret values."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require
from pilothouse.audit.models import AuditEntry
from pilothouse.core.clock import utcnow

SECRET_HINTS = ("token", "secret", "password", "key", "hash")


def _scrub(changes: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop values of anything that looks secret; keep the fact that it changed."""
    if changes is None:
        return None
    return {
        k: ("<redacted>" if any(h in k.lower() for h in SECRET_HINTS) else v)
        for k, v in changes.items()
    }


def record(
    session: AsyncSession,
    actor: Principal,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | str,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit row (create, update, delete, transition, grant, revoke...)."""
    entry = AuditEntry(
        at=utcnow(),
        actor_id=actor.user_id,
        actor=actor.name,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        changes=_scrub(changes),
    )
    session.add(entry)
    return entry


async def list_entries(
    session: AsyncSession,
    actor: Principal,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> Sequence[AuditEntry]:
    """Newest first, optionally for one record; `before` is a seq cursor (admin)."""
    require(actor, "read_audit")
    query = sa.select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if entity_type:
        query = query.where(AuditEntry.entity_type == entity_type)
    if entity_id:
        query = query.where(AuditEntry.entity_id == entity_id)
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    return (await session.scalars(query)).all()
