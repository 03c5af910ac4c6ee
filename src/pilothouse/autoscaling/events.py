"""Recording scaling events (the evaluator's, a manual scale's) and the message the alert
channels receive. Imports only the models, so the release engine can record a manual scale."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.autoscaling.models import ScalingEvent
from pilothouse.core.clock import utcnow
from pilothouse.services.models import Service


def record_event(
    session: AsyncSession,
    svc: Service,
    *,
    action: str,
    before: int,
    after: int,
    reason: str,
    triggered_by: str,
    user: str | None = None,
    success: bool = True,
    error: str | None = None,
    cpu: float | None = None,
    memory: float | None = None,
    deployment_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> ScalingEvent:
    event = ScalingEvent(
        service_id=svc.id,
        environment_id=svc.environment_id,
        timestamp=at or utcnow(),
        action=action,
        instances_before=before,
        instances_after=after,
        trigger_reason=reason,
        cpu_percent_avg=None if cpu is None else round(cpu, 2),
        memory_percent_avg=None if memory is None else round(memory, 2),
        triggered_by=triggered_by,
        triggered_by_user=user,
        success=success,
        error_message=error,
        deployment_id=deployment_id,
    )
    session.add(event)
    return event


def manual_event(
    session: AsyncSession,
    actor: Principal,
    svc: Service,
    before: int,
    after: int,
    deployment_id: uuid.UUID | None,
) -> ScalingEvent | None:
    """The event of a scale by hand (`service scale`); nothing when the count did not change."""
    if before == after:
        return None
    return record_event(
        session,
        svc,
        action="manual_scale",
        before=before,
        after=after,
        reason=f"scaled by hand by {actor.name} from {before} to {after} replicas",
        triggered_by="manual",
        user=None if actor.is_system else actor.name,
        deployment_id=deployment_id,
    )


def event_message(svc_name: str, env_name: str, event: ScalingEvent) -> dict[str, Any]:
    """What the alert channels receive for a scaling event."""
    verb = {"scale_up": "scaled up", "scale_down": "scaled down"}.get(event.action, "scaled")
    outcome = "" if event.success else f" FAILED: {event.error_message}"
    return {
        "event": "scaling",
        "action": event.action,
        "service": svc_name,
        "environment": env_name,
        "instances_before": event.instances_before,
        "instances_after": event.instances_after,
        "trigger_reason": event.trigger_reason,
        "success": event.success,
        "text": f"{svc_name} ({env_name}) {verb} from {event.instances_before} to "
        f"{event.instances_after} replicas: {event.trigger_reason}{outcome}",
    }
