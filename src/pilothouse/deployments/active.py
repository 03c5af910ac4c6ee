"""The one query for "does this service have an active deployment?", shared by deployments
(one at a time) and services (no deleting mid-rollout). Imports only models, so both can use it."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.deployments.models import ACTIVE_STATUSES, Deployment
from pilothouse.errors import Conflict


async def check_no_active(session: AsyncSession, service_id: uuid.UUID, name: str) -> None:
    """Conflict naming the service's active deployment, if it has one (the database also
    enforces one active deployment per service; this gives the readable message)."""
    active = await session.scalar(
        sa.select(Deployment).where(
            Deployment.service_id == service_id, Deployment.status.in_(ACTIVE_STATUSES)
        )
    )
    if active is not None:
        raise Conflict(
            f"{name} already has an active deployment {active.id} ({active.version}, "
            f"{active.status}); wait for it to finish",
            detail={"active_deployment": str(active.id), "status": active.status},
        )
