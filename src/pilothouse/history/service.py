"""The one writer of status_history rows, called by every entity kind's transition()."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.history.models import StatusHistory


def record_change(
    session: AsyncSession,
    entity_type: str,
    entity_id: uuid.UUID,
    from_status: str | None,
    to_status: str,
    *,
    actor: Principal,
    reason: str | None = None,
) -> StatusHistory:
    """Append the status_history row and the audit row for one status change."""
    row = StatusHistory(
        entity_type=entity_type,
        entity_id=entity_id,
        from_status=from_status,
        to_status=to_status,
        changed_by=actor.user_id,
        actor=actor.name,
        reason=reason,
        changed_at=utcnow(),
    )
    session.add(row)
    audit.record(
        session,
        actor,
        "transition",
        entity_type,
        entity_id,
        {"from": from_status, "to": to_status, "reason": reason},
    )
    return row


async def list_for(
    session: AsyncSession, entity_type: str, entity_id: uuid.UUID
) -> Sequence[StatusHistory]:
    """Every status change of one record, oldest first."""
    query = (
        sa.select(StatusHistory)
        .where(StatusHistory.entity_type == entity_type, StatusHistory.entity_id == entity_id)
        .order_by(StatusHistory.changed_at, StatusHistory.id)
    )
    return (await session.scalars(query)).all()
