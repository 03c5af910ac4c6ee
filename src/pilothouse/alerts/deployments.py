"""Deployment notifications (issue 13.7): started, succeeded, failed, rolled back (automatic
and manual) go to the channels that opted in to that event and environment.

The release engine reports each state transition to the hooks in its `event_hooks` list
(`deployment_id`, event); `hook()` below is the one the alerts capability registers (see
alerts/loops.py). It only starts a background task and returns: the task reads the deployment,
claims the (deployment, event) job slot so a notice goes out once, picks the opted-in channels
and broadcasts with the usual isolation and retries (alerts/service.py). Nothing it does can
hold up or fail a deployment: every error is logged and dropped.

Messages name the service, environment, version, who and why; never a variable's value (the
failure reason is scrubbed of secret values by the engine and of URL credentials here). A
service stop or start is a deployment too (kind `stop` / `start`): its notices say the service
stopped or started again, with the operator's reason from its audit entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.alerts.models import DEPLOY_EVENTS, NotificationChannel
from pilothouse.alerts.service import Endpoint, broadcast, endpoints
from pilothouse.audit.models import AuditEntry
from pilothouse.core.crypto import CryptoError, Keyring
from pilothouse.core.db import Database
from pilothouse.core.keys import process_keyring
from pilothouse.core.leases import Leases
from pilothouse.core.logging import get_logger
from pilothouse.core.urls import mask_text
from pilothouse.deployments.models import Deployment
from pilothouse.environments.models import Environment
from pilothouse.services.models import Service

log = get_logger("pilothouse.alerts")

#: The job-slot job under which each (deployment, event) notice is claimed once.
SLOT_JOB = "alerts.deployment"
REASON_MAX = 500


@dataclass(frozen=True)
class Facts:
    """What a deployment notice says (no values of variables, ever)."""

    event: str
    deployment_id: uuid.UUID
    service: str
    environment: str
    environment_id: uuid.UUID
    version: str
    previous_version: str | None
    kind: str  # the deployment's event_type: deploy, rollback, scale...
    operator: str
    automatic: bool
    reason: str | None


def wants(
    channel_events: Sequence[str],
    channel_environments: Sequence[str],
    channel_environment_id: uuid.UUID | None,
    *,
    event: str,
    environment: str,
    environment_id: uuid.UUID,
) -> bool:
    """Whether a channel opted in to `event` in `environment`: the event is listed, the
    environment is listed (or none are), and a channel that belongs to an environment only
    hears about that one."""
    if event not in channel_events:
        return False
    if channel_environment_id is not None and channel_environment_id != environment_id:
        return False
    return not channel_environments or environment in channel_environments


def _stop_start_text(facts: Facts, where: str, who: str) -> str:
    """A service stop or start is no release going live: say what happened to the service."""
    why = f" ({facts.reason})" if facts.reason else ""
    if facts.kind == "stop":
        texts = {
            "started": f"{where} stopping {who}{why}",
            "succeeded": f"{where} stopped {who}{why}",
            "failed": f"{where} stop {who} failed: {facts.reason or 'unknown'}",
        }
    else:
        at = f"at {facts.version} {who}"
        texts = {
            "started": f"{where} starting again {at}{why}",
            "succeeded": f"{where} started again {at}{why}",
            "failed": f"{where} start {at} failed: {facts.reason or 'unknown'}",
        }
    return texts.get(facts.event, f"{where} {facts.kind} {facts.event} {who}")


def message(facts: Facts) -> dict[str, Any]:
    """The notice: one readable line in `text`, and the facts as fields."""
    where = f"{facts.service} ({facts.environment})"
    what = "rollback" if facts.kind == "rollback" else facts.kind
    who = "automatically" if facts.automatic else f"by {facts.operator}"
    if facts.kind in ("stop", "start"):
        text = _stop_start_text(facts, where, who)
    elif facts.event == "started":
        if facts.kind == "rollback":
            text = f"{where}: rollback to {facts.version} started {who}"
        else:
            text = f"{where}: {what} of {facts.version} started {who}"
    elif facts.event == "succeeded":
        text = f"{where}: {facts.version} is live ({what} {who})"
    elif facts.event == "failed":
        text = f"{where}: {what} of {facts.version} {who} failed: {facts.reason or 'unknown'}"
    else:  # rolled_back
        origin = f" from {facts.previous_version}" if facts.previous_version else ""
        text = f"{where}: rolled back{origin} to {facts.version} {who}"
        if facts.reason:
            text += f": {facts.reason}"
    return {
        "event": f"deployment_{facts.event}",
        "deployment_event": facts.event,
        "deployment_id": str(facts.deployment_id),
        "service": facts.service,
        "environment": facts.environment,
        "version": facts.version,
        "previous_version": facts.previous_version,
        "kind": facts.kind,
        "operator": facts.operator,
        "automatic": facts.automatic,
        "reason": facts.reason,
        "text": text,
    }


def _reason(text: str | None) -> str | None:
    return mask_text(text)[:REASON_MAX] if text else None


async def _operator_reason(session: AsyncSession, dep: Deployment) -> str | None:
    """The reason the operator gave for a service stop or start (its audit entry names the
    deployment; services/lifecycle.py)."""
    rows = await session.scalars(
        sa.select(AuditEntry)
        .where(
            AuditEntry.entity_type == "service",
            AuditEntry.entity_id == str(dep.service_id),
            AuditEntry.action == dep.event_type,
        )
        .order_by(AuditEntry.seq.desc())
        .limit(20)
    )
    for entry in rows:
        changes = entry.changes or {}
        if changes.get("deployment") == str(dep.id):
            reason = changes.get("reason")
            return str(reason) if reason else None
    return None


async def facts_of(db: Database, deployment_id: uuid.UUID, event: str) -> Facts | None:
    """Read what a notice says from the store (None if the deployment is gone)."""
    async with db.session(write=False) as session:
        dep = await session.get(Deployment, deployment_id)
        if dep is None:
            return None
        svc = await session.get(Service, dep.service_id)
        env = await session.get(Environment, dep.environment_id)
        origin = await session.get(Deployment, dep.rollback_from) if dep.rollback_from else None
        automatic = dep.triggered_by == "automated"
        reason: str | None = None
        if event == "failed":
            reason = dep.error_message
        elif dep.event_type in ("stop", "start"):
            reason = await _operator_reason(session, dep)
        elif event == "rolled_back":
            if automatic and origin is not None and origin.error_message:
                reason = f"{origin.version} failed: {origin.error_message}"
            elif not automatic:
                reason = "manual rollback"
        return Facts(
            event=event,
            deployment_id=dep.id,
            service=svc.name if svc else str(dep.service_id),
            environment=env.name if env else str(dep.environment_id),
            environment_id=dep.environment_id,
            version=dep.version,
            previous_version=origin.version if origin else None,
            kind=dep.event_type,
            operator=dep.operator,
            automatic=automatic,
            reason=_reason(reason),
        )


async def channels_for(db: Database, facts: Facts, keyring: Keyring | None) -> list[Endpoint]:
    """The active channels that opted in to this event and environment, settings opened."""
    async with db.session(write=False) as session:
        rows = await session.scalars(
            sa.select(NotificationChannel).where(NotificationChannel.is_active)
        )
        chosen = [
            c
            for c in rows
            if wants(
                c.deploy_events or [],
                c.deploy_environments or [],
                c.environment_id,
                event=facts.event,
                environment=facts.environment,
                environment_id=facts.environment_id,
            )
        ]
    return endpoints(chosen, keyring)


async def send(
    db: Database, leases: Leases, deployment_id: uuid.UUID, event: str, *, wait: bool = False
) -> int:
    """Notify the opted-in channels of one deployment event, once (job slot per deployment and
    event); returns how many accepted it. Never raises."""
    try:
        facts = await facts_of(db, deployment_id, event)
        if facts is None:
            return 0
        try:
            keyring: Keyring | None = process_keyring()
        except CryptoError:
            keyring = None
        channels = await channels_for(db, facts, keyring)
        if not channels:
            return 0
        async with db.session(write=False) as session:
            created = await session.scalar(
                sa.select(Deployment.created_at).where(Deployment.id == deployment_id)
            )
        if created is None or not await leases.claim_slot(
            SLOT_JOB, f"{deployment_id}:{event}", created
        ):
            return 0  # already sent (or being sent) by another worker
        return await broadcast(channels, message(facts), db=db, wait=wait)
    except Exception as exc:  # a notice must never disturb a deployment
        log.warning(
            "deployment notice not sent",
            deployment=str(deployment_id),
            deployment_event=event,
            reason=type(exc).__name__,
        )
        return 0


Spawn = Callable[[Any, Coroutine[Any, Any, Any]], bool]


def hook(db: Database, leases: Leases, spawn: Spawn) -> Callable[[uuid.UUID, str], None]:
    """The engine's event hook: starts `send` in the background (keyed per deployment and
    event, so one is never started twice) and returns at once."""

    def emit(deployment_id: uuid.UUID, event: str) -> None:
        if event not in DEPLOY_EVENTS:
            return
        spawn(("deployment_notice", deployment_id, event), send(db, leases, deployment_id, event))

    return emit
