"""Series placement: which environment and service a new series belongs to."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.environments.models import Environment
from pilothouse.services.models import Service


async def placement(
    session: AsyncSession, tags: Mapping[str, str], environment_id: uuid.UUID | None
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(environment id, service id) of a series: the given environment (a scoped token's) or
    the live environment named by the `environment` tag; the live service named by the
    `service` tag inside it. Unknown names leave the id empty (the tags still say it)."""
    env_id = environment_id
    if env_id is None and tags.get("environment"):
        env_id = await session.scalar(
            sa.select(Environment.id).where(
                Environment.name == tags["environment"], Environment.deleted_at.is_(None)
            )
        )
    service_id = None
    if env_id is not None and tags.get("service"):
        service_id = await session.scalar(
            sa.select(Service.id).where(
                Service.environment_id == env_id,
                Service.name == tags["service"],
                Service.deleted_at.is_(None),
            )
        )
    return env_id, service_id
