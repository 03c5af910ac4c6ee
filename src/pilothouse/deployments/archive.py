"""Archiving old deployments (seed 000; the rule is deployments/retention.py).

- `deployments.archive` (once per hour slot across workers, registered in worker.CAPABILITIES):
  marks `archived_at` on every deployment the rule archives, in batches of BATCH, one
  transaction per batch, with one audit entry (action `archive`) per deployment. Nothing is
  deleted: archived deployments stay readable by id and in the audit trail and status history.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import system_actor
from pilothouse.artifacts.models import Artifact
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime
from pilothouse.deployments import retention
from pilothouse.deployments.models import Deployment

log = get_logger("pilothouse.worker")

ARCHIVE_EVERY = 3600.0
BATCH = 500
ACTOR = system_actor("retention")
REASON = "older than 90 days (seed 000): hidden from default lists, kept for audit"


async def archive_batch(
    session: AsyncSession, now: datetime, *, after: tuple[datetime, uuid.UUID] | None = None
) -> tuple[int, tuple[datetime, uuid.UUID] | None]:
    """Archive what the rule archives among the next BATCH unarchived deployments created
    before the cutoff (oldest first, after the keyset `after`); returns how many were archived
    and the keyset to continue from (None: done)."""
    query = (
        sa.select(
            Deployment.id,
            Deployment.created_at,
            Deployment.status,
            sa.func.coalesce(Artifact.deployed, sa.false()),
        )
        .outerjoin(Artifact, Artifact.id == Deployment.artifact_id)
        .where(Deployment.archived_at.is_(None), Deployment.created_at < retention.cutoff(now))
        .order_by(Deployment.created_at, Deployment.id)
        .limit(BATCH)
    )
    if after is not None:
        at, ident = after
        query = query.where(
            sa.or_(
                Deployment.created_at > at,
                sa.and_(Deployment.created_at == at, Deployment.id > ident),
            )
        )
    rows = (await session.execute(query)).all()
    chosen = [
        ident
        for ident, created_at, status, live in rows
        if retention.archivable(
            retention.Facts(created_at=created_at, status=status, archived=False, live=bool(live)),
            now,
        )
    ]
    if chosen:
        await session.execute(
            sa.update(Deployment)
            .where(Deployment.id.in_(chosen), Deployment.archived_at.is_(None))
            .values(archived_at=now)
            .execution_options(synchronize_session=False)
        )
        for ident in chosen:
            audit.record(session, ACTOR, "archive", "deployment", ident, {"reason": REASON})
    following = (rows[-1][1], rows[-1][0]) if len(rows) == BATCH else None
    return len(chosen), following


async def archive_old(db: Database, now: datetime | None = None) -> int:
    """One pass over the store; returns how many deployments were archived."""
    now = now or utcnow()
    total, after = 0, None
    while True:
        async with db.session() as session:
            done, after = await archive_batch(session, now, after=after)
        total += done
        if after is None:
            return total


def loops(rt: Runtime) -> list[Loop]:
    async def archive() -> None:
        archived = await archive_old(rt.db)
        if archived:
            log.info("deployments archived", archived=archived)

    return [Loop("deployments.archive", archive, ARCHIVE_EVERY, once=True)]
