"""Replicas: record, read, list, and the replica transition(). The drivers call these."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, visible
from pilothouse.core.clock import utcnow
from pilothouse.core.db import one_by_ref
from pilothouse.core.statemachine import check_transition
from pilothouse.errors import NotFound
from pilothouse.history import service as history
from pilothouse.replicas.models import Replica
from pilothouse.replicas.transitions import TABLE
from pilothouse.services import service as services
from pilothouse.services.models import Service


def _query(actor: Principal) -> sa.Select[Replica]:
    return (
        sa.select(Replica)
        .join(Service, Service.id == Replica.service_id)
        .where(
            Service.deleted_at.is_(None), visible(actor, Service.owner_id, Service.environment_id)
        )
    )


async def get_replica(
    session: AsyncSession, actor: Principal, replica_id: uuid.UUID | str
) -> Replica:
    """A replica the actor can see, by id or (a string) unique id prefix."""
    if isinstance(replica_id, str):
        found: Replica = await one_by_ref(
            session, _query(actor).order_by(Replica.id), Replica.id, replica_id, "replica"
        )
        return found
    replica = await session.scalar(_query(actor).where(Replica.id == replica_id))
    if replica is None:
        raise NotFound(f"replica {replica_id} not found")
    return replica


async def list_replicas(
    session: AsyncSession, actor: Principal, service_ref: str, *, environment: str | None = None
) -> Sequence[Replica]:
    svc = await services.get_service(session, actor, service_ref, environment=environment)
    query = _query(actor).where(Replica.service_id == svc.id).order_by(Replica.created_at)
    return (await session.scalars(query)).all()


async def create_replica(
    session: AsyncSession, service_id: uuid.UUID, *, actor: Principal, **fields: Any
) -> Replica:
    """Record a new replica as pending (status_history from None)."""
    replica = Replica(service_id=service_id, status="pending", **fields)
    session.add(replica)
    await session.flush()
    history.record_change(session, "replica", replica.id, None, "pending", actor=actor)
    return replica


async def transition(
    session: AsyncSession,
    replica: Replica,
    to: str,
    *,
    actor: Principal,
    reason: str | None = None,
) -> Replica:
    """The only way a replica's status changes; a restart from failed/stopped is counted."""
    check_transition(TABLE, "replica", replica.status, to)
    before = replica.status
    now = utcnow()
    if to == "starting" and before in ("failed", "stopped"):
        replica.restart_count += 1
        replica.last_restart_at = now
    if to == "running":
        replica.started_at = now
    if to in ("stopped", "failed"):
        replica.stopped_at = now
    replica.status = to
    replica.updated_at = now
    history.record_change(session, "replica", replica.id, before, to, actor=actor, reason=reason)
    return replica
