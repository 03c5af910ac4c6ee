"""Reading status history with the same visibility rules as the records themselves."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.backups import service as backups
from pilothouse.deployments import service as deployments
from pilothouse.history import service as history
from pilothouse.history.models import StatusHistory
from pilothouse.replicas import service as replicas
from pilothouse.services import service as services


async def history_of(
    session: AsyncSession, actor: Principal, entity_type: str, ref: str
) -> Sequence[StatusHistory]:
    """Status changes of a record the actor can see (404 otherwise), oldest first."""
    entity_id: uuid.UUID
    if entity_type == "deployment":
        entity_id = (await deployments.get_deployment(session, actor, ref)).id
    elif entity_type == "service":
        entity_id = (await services.get_service(session, actor, ref)).id
    elif entity_type == "backup":
        entity_id = (await backups.get_backup(session, actor, ref)).id
    else:
        entity_id = (await replicas.get_replica(session, actor, ref)).id
    return await history.list_for(session, entity_type, entity_id)
