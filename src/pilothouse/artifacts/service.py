"""Artifacts: register, list, read, update the changelog, soft delete; mark one as deployed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, visible
from pilothouse.artifacts.models import Artifact
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.errors import Conflict, NotFound
from pilothouse.services import service as services
from pilothouse.services.models import Service


def _query(actor: Principal) -> sa.Select[Artifact]:
    return (
        sa.select(Artifact)
        .join(Service, Service.id == Artifact.service_id)
        .where(
            Artifact.deleted_at.is_(None),
            Service.deleted_at.is_(None),
            visible(actor, Artifact.owner_id, Service.environment_id),
        )
    )


async def get_artifact(session: AsyncSession, actor: Principal, artifact_id: uuid.UUID) -> Artifact:
    artifact = await session.scalar(_query(actor).where(Artifact.id == artifact_id))
    if artifact is None:
        raise NotFound(f"artifact {artifact_id} not found")
    return artifact


async def get_by_version(
    session: AsyncSession, actor: Principal, service_id: uuid.UUID, version: str
) -> Artifact:
    artifact = await session.scalar(
        _query(actor).where(Artifact.service_id == service_id, Artifact.version == version)
    )
    if artifact is None:
        raise NotFound(f"artifact version {version!r} is not registered for this service")
    return artifact


def check_deployable(artifact: Artifact) -> None:
    """A 409 for a pruned artifact (artifacts/retention.py): the record stays, not its files.
    The live one is never refused (a restart or a scale of what runs)."""
    if artifact.pruned_at is not None and not artifact.deployed:
        raise Conflict(
            f"artifact {artifact.version!r} was pruned on {artifact.pruned_at:%Y-%m-%d} (unused "
            "for 30 days and not a rollback target); register the build again as a new version"
        )


async def get_deployed(session: AsyncSession, service_id: uuid.UUID) -> Artifact | None:
    """The service's live artifact, if any."""
    return await session.scalar(
        sa.select(Artifact).where(Artifact.service_id == service_id, Artifact.deployed.is_(True))
    )


async def list_artifacts(
    session: AsyncSession,
    actor: Principal,
    *,
    service: str | None = None,
    environment: str | None = None,
    limit: int = 100,
) -> Sequence[Artifact]:
    query = _query(actor).order_by(Artifact.created_at.desc()).limit(limit)
    if service:
        svc = await services.get_service(session, actor, service, environment=environment)
        query = query.where(Artifact.service_id == svc.id)
    return (await session.scalars(query)).all()


async def register_artifact(
    session: AsyncSession,
    actor: Principal,
    *,
    service: str,
    environment: str | None = None,
    **fields: Any,
) -> Artifact:
    """Register a build of a service (operator); versions are unique per service."""
    svc = await services.get_service(session, actor, service, environment=environment)
    require(actor, "register_artifacts")
    taken = await session.scalar(
        sa.select(Artifact.id).where(
            Artifact.service_id == svc.id,
            Artifact.version == fields["version"],
            Artifact.deleted_at.is_(None),
        )
    )
    if taken:
        raise Conflict(f"version {fields['version']!r} is already registered for {svc.name!r}")
    artifact = Artifact(owner_id=actor.id, service_id=svc.id, **fields)
    session.add(artifact)
    await session.flush()
    audit.record(session, actor, "create", "artifact", artifact.id, dict(fields))
    return artifact


async def update_artifact(
    session: AsyncSession, actor: Principal, artifact_id: uuid.UUID, changes: dict[str, Any]
) -> Artifact:
    artifact = await get_artifact(session, actor, artifact_id)
    require(actor, "manage_artifacts")
    for key, value in changes.items():
        setattr(artifact, key, value)
    audit.record(session, actor, "update", "artifact", artifact.id, changes)
    return artifact


async def delete_artifact(
    session: AsyncSession, actor: Principal, artifact_id: uuid.UUID
) -> Artifact:
    """Soft delete; the live artifact cannot be deleted."""
    artifact = await get_artifact(session, actor, artifact_id)
    require(actor, "manage_artifacts")
    if artifact.deployed:
        raise Conflict(f"artifact {artifact.version!r} is deployed; deploy another one first")
    artifact.deleted_at = utcnow()
    audit.record(session, actor, "delete", "artifact", artifact.id, {"version": artifact.version})
    return artifact


async def mark_deployed(session: AsyncSession, artifact: Artifact) -> None:
    """Make `artifact` the service's only deployed one (seed 001)."""
    await session.execute(
        sa.update(Artifact)
        .where(Artifact.service_id == artifact.service_id, Artifact.deployed.is_(True))
        .values(deployed=False)
        .execution_options(synchronize_session="fetch")
    )
    await session.flush()
    artifact.deployed = True
    artifact.deployed_at = utcnow()
