"""Deployments: record, list, read, transition; logs: append (one or a batch) and read."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import DEPLOYER, DEPLOYER_EVENT_TYPES, Principal, require, visible
from pilothouse.artifacts import service as artifacts
from pilothouse.artifacts.models import Artifact
from pilothouse.audit import service as audit
from pilothouse.autoscaling import events as scaling_events
from pilothouse.core import redact
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import Keyring
from pilothouse.core.db import one_by_ref
from pilothouse.core.statemachine import check_transition
from pilothouse.deployments import frequency, withdata
from pilothouse.deployments import rollback as rollback_rule
from pilothouse.deployments.active import check_no_active
from pilothouse.deployments.models import Deployment, DeploymentLog
from pilothouse.deployments.rollback import Step as RollbackStep
from pilothouse.deployments.transitions import TABLE, TERMINAL
from pilothouse.environments import service as environments
from pilothouse.environments.models import Environment
from pilothouse.errors import AlreadyLive, Conflict, Forbidden, NotFound, ValidationFailed
from pilothouse.history import service as history
from pilothouse.history.models import StatusHistory
from pilothouse.nodes import service as nodes
from pilothouse.replicas.models import Replica
from pilothouse.services import service as services
from pilothouse.services import stopstart
from pilothouse.services.models import Service

#: Deployments whose failure is not followed by an automatic rollback: they return to (or keep)
#: the live release already.
NO_AUTOMATIC_ROLLBACK = frozenset({"rollback", "scale", "stop", "start"})


@dataclass(frozen=True)
class DeploymentFilter:
    environment: str | None = None
    service: str | None = None
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    archived: bool = False  # only the archived ones (retention.py) instead of the others


def encode_cursor(created_at: datetime, deployment_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{deployment_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Inverse of encode_cursor; a malformed cursor is a 422 on the `cursor` field."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, ident = raw.split("|")
        return datetime.fromisoformat(stamp), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("cursor", "is not a cursor returned by this API") from None


def _visible(actor: Principal) -> sa.ColumnElement[bool]:
    return visible(actor, Deployment.owner_id, Deployment.environment_id)


async def get_deployment(
    session: AsyncSession, actor: Principal, deployment_id: uuid.UUID | str, *, lock: bool = False
) -> Deployment:
    """A deployment the actor can see, by id or (a string) unique id prefix."""
    if isinstance(deployment_id, str):
        query = sa.select(Deployment).where(_visible(actor)).order_by(Deployment.id)
        found: Deployment = await one_by_ref(
            session, query, Deployment.id, deployment_id, "deployment"
        )
        deployment_id = found.id
    query = sa.select(Deployment).where(Deployment.id == deployment_id, _visible(actor))
    if lock:
        query = query.with_for_update()
    deployment = await session.scalar(query)
    if deployment is None:
        raise NotFound(f"deployment {deployment_id} not found")
    return deployment


async def list_deployments(
    session: AsyncSession,
    actor: Principal,
    filters: DeploymentFilter,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[Sequence[Deployment], str | None]:
    """Newest first, filtered; returns the page and the cursor of the next one."""
    query = sa.select(Deployment).where(_visible(actor))
    query = query.where(
        Deployment.archived_at.is_not(None)
        if filters.archived
        else Deployment.archived_at.is_(None)
    )
    if filters.service:
        svc = await services.get_service(
            session, actor, filters.service, environment=filters.environment
        )
        query = query.where(Deployment.service_id == svc.id)
    elif filters.environment:
        env = await environments.get_environment(session, actor, filters.environment)
        query = query.where(Deployment.environment_id == env.id)
    if filters.statuses:
        query = query.where(Deployment.status.in_(filters.statuses))
    if filters.since:
        query = query.where(Deployment.created_at >= filters.since)
    if filters.until:
        query = query.where(Deployment.created_at < filters.until)
    if cursor:
        at, ident = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                Deployment.created_at < at,
                sa.and_(Deployment.created_at == at, Deployment.id < ident),
            )
        )
    query = query.order_by(Deployment.created_at.desc(), Deployment.id.desc()).limit(limit + 1)
    rows = (await session.scalars(query)).all()
    if len(rows) > limit:
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(last.created_at, last.id)
    return rows, None


async def _check_frequency(
    session: AsyncSession, env: Environment, service_id: uuid.UUID, event_type: str
) -> None:
    """Apply the environment's max_deployment_frequency (deployments/frequency.py)."""
    per_hour = (env.limits or {}).get("max_deployment_frequency")
    if not per_hour or not frequency.counts(event_type):
        return
    recent = await session.scalar(
        sa.select(sa.func.count())
        .select_from(Deployment)
        .where(
            Deployment.service_id == service_id,
            Deployment.event_type.not_in(frequency.EXEMPT),
            Deployment.created_at >= utcnow() - timedelta(hours=1),
        )
    )
    message = frequency.refusal(
        event_type, recent=recent or 0, per_hour=per_hour, environment=env.name
    )
    if message:
        raise Conflict(message)


#: Events whose pinned config is copied from an earlier release (deployments/pins.py).
COPYING_CONFIG = ("rollback", "scale", "start", "stop")


async def went_live(
    session: AsyncSession, service_id: uuid.UUID, artifact_id: uuid.UUID
) -> Deployment | None:
    """The last deployment of `artifact_id` to the service that went live (reached success):
    the release a rollback to that artifact returns to."""
    return await session.scalar(
        sa.select(Deployment)
        .join(
            StatusHistory,
            sa.and_(
                StatusHistory.entity_type == "deployment",
                StatusHistory.entity_id == Deployment.id,
                StatusHistory.to_status == "success",
            ),
        )
        .where(Deployment.service_id == service_id, Deployment.artifact_id == artifact_id)
        .order_by(StatusHistory.changed_at.desc(), Deployment.created_at.desc())
        .limit(1)
    )


async def config_source(
    session: AsyncSession, service_id: uuid.UUID, artifact_id: uuid.UUID, event_type: str
) -> uuid.UUID | None:
    """The release whose pins a new deployment copies (rollback, scale, stop, start), or None
    (it pins its own)."""
    if event_type not in COPYING_CONFIG:
        return None
    source = await went_live(session, service_id, artifact_id)
    return source.id if source is not None else None


async def create_deployment(
    session: AsyncSession,
    actor: Principal,
    *,
    service: str,
    version: str,
    environment: str | None = None,
    event_type: str = "deploy",
    rollback_from: uuid.UUID | None = None,
    allow_missing_origin: bool = False,
    **fields: Any,
) -> Deployment:
    """Record a deployment as pending (operator); the release engine carries it out."""
    svc = await services.get_service(session, actor, service, environment=environment)
    require(actor, "deploy")
    if actor.role == DEPLOYER and event_type not in DEPLOYER_EVENT_TYPES:
        raise Forbidden(
            f"role 'deployer' may only deploy and roll back, not {event_type}; needs 'operator'",
            detail={"event_type": event_type, "role": actor.role, "needs": "operator"},
        )
    env = await session.get(Environment, svc.environment_id)
    assert env is not None
    if not env.is_active:
        raise Conflict(f"environment {env.name!r} is inactive")
    artifact = await artifacts.get_by_version(session, actor, svc.id, version)
    artifacts.check_deployable(artifact)
    if event_type == "rollback" and rollback_from is None and not allow_missing_origin:
        raise ValidationFailed("rollback_from", "is required when event_type is rollback")
    if rollback_from is not None:
        origin = await get_deployment(session, actor, rollback_from)
        if origin.service_id != svc.id:
            raise ValidationFailed("rollback_from", "must be a deployment of the same service")
    await check_no_active(session, svc.id, svc.name)
    stopped = stopstart.deploy_refusal(svc.name, svc.status, event_type)
    if stopped is not None:
        raise Conflict(stopped.message, detail=stopped.detail)
    previous = await artifacts.get_deployed(session, svc.id)
    if event_type == "deploy" and previous is not None and previous.id == artifact.id:
        raise AlreadyLive(
            f"{svc.name} {artifact.version} is already live; nothing to do "
            "(use event_type restart to restart it)",
            detail={"service": svc.name, "version": artifact.version},
        )
    await _check_frequency(session, env, svc.id, event_type)
    # Pre-flight: the replicas this adds (surge included) must fit on the nodes (409 naming
    # the shortfall; nothing is recorded, started or stopped).
    await nodes.check_capacity(session, svc, env, version=artifact.version, event_type=event_type)
    deployment = Deployment(
        owner_id=actor.id,
        service_id=svc.id,
        environment_id=svc.environment_id,
        artifact_id=artifact.id,
        previous_artifact_id=previous.id if previous else None,
        version=artifact.version,
        commit_sha=artifact.commit_sha,
        event_type=event_type,
        rollback_from=rollback_from,
        config_from=await config_source(session, svc.id, artifact.id, event_type),
        operator=actor.name,
        status="pending",
        **fields,
    )
    return await _insert(session, actor, deployment, service_name=svc.name, reason="recorded")


async def _insert(
    session: AsyncSession,
    actor: Principal,
    deployment: Deployment,
    *,
    service_name: str,
    reason: str,
) -> Deployment:
    """The one road a new deployment takes into the store: the row (pending), its first
    status_history row and its audit entry, in the caller's transaction."""
    try:
        async with session.begin_nested():
            session.add(deployment)
            await session.flush()
    except IntegrityError:
        # Another process recorded one between our check and our insert.
        await check_no_active(session, deployment.service_id, service_name)
        raise
    history.record_change(
        session, "deployment", deployment.id, None, "pending", actor=actor, reason=reason
    )
    audit.record(
        session,
        actor,
        "create",
        "deployment",
        deployment.id,
        {
            "service": service_name,
            "version": deployment.version,
            "event_type": deployment.event_type,
        },
    )
    return deployment


async def record_automatic_rollback(
    session: AsyncSession,
    actor: Principal,
    failed: Deployment,
    *,
    service_name: str,
    reason: str,
    lease_owner: str,
    lease_expires_at: datetime,
) -> Deployment | None:
    """Record the automatic rollback of a failed deployment to the artifact that was live
    before it, already leased to the worker that carries it out. None when there is nothing to
    go back to: the failed one was itself a rollback or a scale, or a service stop or start (the
    live release stays what it was), there was no live artifact, or that artifact was
    deleted."""
    if failed.event_type in NO_AUTOMATIC_ROLLBACK or failed.previous_artifact_id is None:
        return None
    previous = await session.get(Artifact, failed.previous_artifact_id)
    if previous is None or previous.deleted_at is not None:
        return None
    rollback = Deployment(
        owner_id=failed.owner_id,
        service_id=failed.service_id,
        environment_id=failed.environment_id,
        artifact_id=previous.id,
        previous_artifact_id=failed.artifact_id,
        rollback_from=failed.id,
        config_from=await config_source(session, failed.service_id, previous.id, "rollback"),
        version=previous.version,
        commit_sha=previous.commit_sha,
        event_type="rollback",
        triggered_by="automated",
        operator=actor.name,
        status="pending",
        lease_owner=lease_owner,
        lease_expires_at=lease_expires_at,
    )
    return await _insert(
        session, actor, rollback, service_name=service_name, reason=f"automatic rollback: {reason}"
    )


async def transition(
    session: AsyncSession,
    deployment: Deployment,
    to: str,
    *,
    actor: Principal,
    reason: str | None = None,
    **outcome: Any,
) -> Deployment:
    """The only way a deployment's status changes: check, stamp times, write history."""
    check_transition(TABLE, "deployment", deployment.status, to)
    before = deployment.status
    now = utcnow()
    for key, value in outcome.items():
        if value is not None:
            setattr(deployment, key, value)
    if to in ("building", "deploying") and deployment.started_at is None:
        deployment.started_at = now
    if to in ("success", "failed", "rolled_back"):
        # An ended deployment is nobody's work: its row must not name a worker.
        deployment.lease_owner = deployment.lease_expires_at = None
    if to in TERMINAL and to != "rolled_back":
        deployment.completed_at = now
        start = deployment.started_at or deployment.created_at
        deployment.duration_seconds = int((now - start).total_seconds())
    if to == "failed" and not deployment.error_message:
        deployment.error_message = reason
    if to == "rolled_back" and not deployment.rollback_reason:
        deployment.rollback_reason = reason
    if to == "success" and deployment.artifact_id is not None:
        artifact = await session.get(Artifact, deployment.artifact_id)
        if artifact is not None:
            await artifacts.mark_deployed(session, artifact)
    deployment.status = to
    deployment.updated_at = now
    history.record_change(
        session, "deployment", deployment.id, before, to, actor=actor, reason=reason
    )
    return deployment


async def secret_patterns(
    session: AsyncSession, keyring: Keyring, deployment: Deployment
) -> list[str]:
    """What to scrub from text stored for this deployment: the values of the secret variables
    its service's processes receive (they may echo them into anything they report): the
    versions it pinned, and today's."""
    from pilothouse.deployments import pins  # pins reads deployments through this module
    from pilothouse.variables import service as variables

    env = await session.get(Environment, deployment.environment_id)
    if env is None:
        return []
    today = await variables.for_deployment(session, keyring, env, deployment.service_id)
    pinned = await pins.delivery(session, keyring, env, deployment.service_id, deployment.id)
    return redact.patterns(sorted({*today.secrets, *pinned.secrets}))


async def transition_deployment(
    session: AsyncSession,
    actor: Principal,
    deployment_id: uuid.UUID,
    to: str,
    *,
    keyring: Keyring,
    reason: str | None = None,
    **outcome: Any,
) -> Deployment:
    """A status change asked for through the API (operator); reasons are scrubbed of secrets."""
    deployment = await get_deployment(session, actor, deployment_id, lock=True)
    require(actor, "transition_deployments")
    pats = await secret_patterns(session, keyring, deployment)
    reason = redact.scrub_value(reason, pats)
    outcome = redact.scrub_value(outcome, pats)
    if (
        deployment.lease_owner
        and deployment.lease_expires_at
        and deployment.lease_expires_at > utcnow()
    ):
        raise Conflict(
            f"deployment {deployment.id} is being carried out by worker {deployment.lease_owner}; "
            "its status changes as the rollout proceeds"
        )
    return await transition(session, deployment, to, actor=actor, reason=reason, **outcome)


async def append_logs(
    session: AsyncSession,
    actor: Principal,
    deployment_id: uuid.UUID,
    lines: Sequence[dict[str, Any]],
    *,
    keyring: Keyring,
) -> int:
    """Append log lines in order (operator), scrubbed of the deployment's secret values
    (message and metadata); returns how many were stored."""
    deployment = await get_deployment(session, actor, deployment_id)
    require(actor, "write_logs")
    pats = await secret_patterns(session, keyring, deployment)
    clean = [
        {
            **line,
            "message": redact.scrub(line["message"], pats),
            "metadata": redact.scrub_value(line.get("metadata"), pats),
        }
        for line in lines
    ]
    return await write_logs(session, deployment_id, clean)


async def write_logs(
    session: AsyncSession, deployment_id: uuid.UUID, lines: Sequence[dict[str, Any]]
) -> int:
    """Insert lines for a deployment already checked by the caller (one multi-row INSERT)."""
    now = utcnow()
    rows = [
        {
            "deployment_id": deployment_id,
            "timestamp": line.get("timestamp") or now,
            "level": line.get("level", "info"),
            "source": line.get("source", "deploy"),
            "message": line["message"],
            "meta": line.get("metadata"),
        }
        for line in lines
    ]
    if rows:
        await session.execute(sa.insert(DeploymentLog), rows)
    return len(rows)


async def read_logs(
    session: AsyncSession,
    actor: Principal,
    deployment_id: uuid.UUID,
    *,
    after: int = 0,
    limit: int = 1000,
    level: str | None = None,
) -> Sequence[DeploymentLog]:
    """Lines after `after` (a seq), oldest first."""
    await get_deployment(session, actor, deployment_id)
    query = (
        sa.select(DeploymentLog)
        .where(DeploymentLog.deployment_id == deployment_id, DeploymentLog.seq > after)
        .order_by(DeploymentLog.seq)
        .limit(limit)
    )
    if level:
        query = query.where(DeploymentLog.level == level)
    return (await session.scalars(query)).all()


@dataclass
class Progress:
    """One poll of a deployment for live output."""

    deployment: Deployment
    logs: Sequence[DeploymentLog]
    replicas: Sequence[Replica]
    rollback: Deployment | None


async def progress(
    session: AsyncSession, actor: Principal, deployment_id: uuid.UUID, *, after: int
) -> Progress:
    """The deployment, its new log lines, its replicas, and its automatic rollback (if any)."""
    deployment = await get_deployment(session, actor, deployment_id)
    logs = (
        await session.scalars(
            sa.select(DeploymentLog)
            .where(DeploymentLog.deployment_id == deployment_id, DeploymentLog.seq > after)
            .order_by(DeploymentLog.seq)
            .limit(1000)
        )
    ).all()
    replicas = (
        await session.scalars(
            sa.select(Replica)
            .where(Replica.deployment_id == deployment_id)
            .order_by(Replica.created_at)
        )
    ).all()
    rollback = await session.scalar(
        sa.select(Deployment).where(Deployment.rollback_from == deployment_id)
    )
    return Progress(deployment, logs, replicas, rollback)


async def _release_history(session: AsyncSession, service_id: uuid.UUID) -> list[RollbackStep]:
    """The service's deployments that went live (reached success), in the order they did."""
    rows = await session.execute(
        sa.select(Deployment.artifact_id, Deployment.event_type)
        .join(
            StatusHistory,
            sa.and_(
                StatusHistory.entity_type == "deployment",
                StatusHistory.entity_id == Deployment.id,
                StatusHistory.to_status == "success",
            ),
        )
        .where(Deployment.service_id == service_id, Deployment.artifact_id.is_not(None))
        .order_by(StatusHistory.changed_at, Deployment.created_at)
    )
    return [RollbackStep(str(artifact), event, went_live=True) for artifact, event in rows]


async def release_history(session: AsyncSession, service_id: uuid.UUID) -> list[RollbackStep]:
    """The service's release history as deployments/rollback.py reads it (artifact retention
    keeps what a rollback could return to)."""
    return await _release_history(session, service_id)


@dataclass
class RollbackPlan:
    """What a manual rollback of a service would do: from which release to which."""

    service: Service
    live: Artifact
    target: Artifact
    live_deployment: Deployment | None


async def plan_rollback(
    session: AsyncSession,
    actor: Principal,
    service: str,
    *,
    environment: str | None = None,
    to_version: str | None = None,
) -> RollbackPlan:
    """The release a rollback returns to: `to_version` (a release that went live at some time),
    or the last release that went live before the live one and was not rolled back since
    (deployments/rollback.py)."""
    svc = await services.get_service(session, actor, service, environment=environment)
    require(actor, "deploy")
    live = await artifacts.get_deployed(session, svc.id)
    if live is None:
        raise Conflict(f"{svc.name} has no live artifact to roll back from")
    live_deployment = await session.scalar(
        sa.select(Deployment)
        .where(Deployment.service_id == svc.id, Deployment.artifact_id == live.id)
        .where(Deployment.status == "success")
        .order_by(Deployment.created_at.desc())
        .limit(1)
    )
    steps = await _release_history(session, svc.id)
    target: Artifact | None = None
    if to_version is not None:
        target = await artifacts.get_by_version(session, actor, svc.id, to_version)
        if target.id == live.id:
            raise AlreadyLive(f"{svc.name} {to_version} is already live; nothing to do")
        if not rollback_rule.went_live(steps, str(target.id)):
            raise Conflict(
                f"{svc.name} {to_version} never went live (no deployment of it succeeded), so a "
                "rollback cannot return to it; deploy it with `pilothouse deploy` instead",
                detail={"service": svc.name, "version": to_version},
            )
    else:
        for candidate in rollback_rule.rollback_candidates(steps, str(live.id)):
            found = await session.get(Artifact, uuid.UUID(candidate))
            if found is not None and found.deleted_at is None:
                target = found
                break
        if target is None:
            raise Conflict(
                f"{svc.name} has no earlier release to roll back to: none went live before "
                f"{live.version} without being rolled back since"
            )
    return RollbackPlan(svc, live, target, live_deployment)


async def create_rollback(
    session: AsyncSession,
    actor: Principal,
    service: str,
    *,
    environment: str | None = None,
    to_version: str | None = None,
    with_data: bool = False,
) -> Deployment:
    """Roll a service back by hand to the release `plan_rollback` chooses. Recorded as
    event_type rollback, rollback_from = the live deployment. `with_data` also restores the
    pre-deployment backup of the release being left (deployments/withdata.py); 409 when it has
    none that fits."""
    plan = await plan_rollback(
        session, actor, service, environment=environment, to_version=to_version
    )
    svc, live, target = plan.service, plan.live, plan.target
    data = await withdata.data_restore(session, svc.id, live, target) if with_data else None
    if data is not None and not data.available:
        raise Conflict(
            f"a rollback of {svc.name} from {live.version} to {target.version} cannot restore "
            f"data: {data.reason}",
            detail={"service": svc.name, "from": live.version, "to": target.version},
        )
    deployment = await create_deployment(
        session,
        actor,
        service=str(svc.id),
        version=target.version,
        event_type="rollback",
        rollback_from=plan.live_deployment.id if plan.live_deployment else None,
        allow_missing_origin=True,
        triggered_by="manual",
        restore_backup_ids=data.ids if data is not None else None,
    )
    if data is not None:
        withdata.request_audit(session, actor, deployment, data)
    return deployment


async def scale(
    session: AsyncSession,
    actor: Principal,
    service: str,
    target_replicas: int,
    *,
    environment: str | None = None,
    manual: bool = True,
) -> tuple[Any, Deployment | None]:
    """Set a service's target replicas; when it has a live artifact (and is not stopped),
    record a `scale` deployment of that artifact so a worker brings the replicas to the new
    count. A scale by hand (`manual`) also records a `manual_scale` scaling event; the
    autoscaler records its own."""
    svc = await services.get_service(session, actor, service, environment=environment)
    require(actor, "scale")
    live = await artifacts.get_deployed(session, svc.id)
    if live is not None:
        await check_no_active(session, svc.id, svc.name)
    before = svc.target_replicas
    changed = before != target_replicas
    svc = await services.scale_service(session, actor, str(svc.id), target_replicas)
    deployment = None
    if live is not None and changed and svc.status != "stopped":
        # A stopped service keeps no replicas: `service start` brings up the new count.
        deployment = await create_deployment(
            session, actor, service=str(svc.id), version=live.version, event_type="scale"
        )
    if manual:
        scaling_events.manual_event(
            session, actor, svc, before, target_replicas, deployment.id if deployment else None
        )
    return svc, deployment
