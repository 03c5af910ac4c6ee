"""Scaling policies (read, set, delete) and scaling events (list). Access: reading needs the
service to be visible; setting needs the `scale` right."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require
from pilothouse.audit import service as audit
from pilothouse.autoscaling import simulate as simulation
from pilothouse.autoscaling.evaluate import Subject
from pilothouse.autoscaling.models import ScalingCohort, ScalingEvent, ScalingPolicy
from pilothouse.autoscaling.rules import Datapoint, Policy
from pilothouse.autoscaling.schemas import (
    DEFAULTS,
    PolicyRead,
    PolicySet,
    SimulatedStep,
    SimulateRequest,
    SimulateResult,
    merged,
)
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.environments.models import Environment
from pilothouse.errors import NotFound, ValidationFailed
from pilothouse.services import service as services
from pilothouse.services.models import Service

FIELDS = tuple(DEFAULTS)


def values_of(policy: ScalingPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in FIELDS}


async def _env_name(session: AsyncSession, svc: Service) -> str:
    env = await session.get(Environment, svc.environment_id)
    return env.name if env is not None else ""


async def evaluated_at(session: AsyncSession, policy: ScalingPolicy) -> datetime | None:
    """When the policy was last evaluated: its cohort's time (evaluate.mark_evaluated)."""
    if policy.cohort_id is None:
        return None
    cohort = await session.get(ScalingCohort, policy.cohort_id)
    return cohort.evaluated_at if cohort is not None else None


async def read(session: AsyncSession, policy: ScalingPolicy, svc: Service) -> PolicyRead:
    return PolicyRead.model_validate(
        {
            **values_of(policy),
            "id": policy.id,
            "service_id": svc.id,
            "service": svc.name,
            "environment": await _env_name(session, svc),
            "current_replicas": svc.target_replicas,
            "evaluated_at": await evaluated_at(session, policy),
            "last_decision": policy.last_decision,
            "created_at": policy.created_at,
            "updated_at": policy.updated_at,
        }
    )


async def policy_of(session: AsyncSession, service_id: uuid.UUID) -> ScalingPolicy | None:
    found: ScalingPolicy | None = await session.scalar(
        sa.select(ScalingPolicy).where(ScalingPolicy.service_id == service_id)
    )
    return found


async def policies_of(
    session: AsyncSession, service_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ScalingPolicy]:
    """The policies of these services (those that have one), by service id: one query."""
    if not service_ids:
        return {}
    rows = await session.scalars(
        sa.select(ScalingPolicy).where(ScalingPolicy.service_id.in_(list(service_ids)))
    )
    return {row.service_id: row for row in rows}


async def get_policy(
    session: AsyncSession, actor: Principal, ref: str, *, environment: str | None = None
) -> tuple[ScalingPolicy, Service]:
    svc = await services.get_service(session, actor, ref, environment=environment)
    policy = await policy_of(session, svc.id)
    if policy is None:
        raise NotFound(f"service {svc.name} has no scaling policy; set one with `scaling set`")
    return policy, svc


async def set_policy(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    change: PolicySet,
    *,
    environment: str | None = None,
) -> tuple[ScalingPolicy, Service]:
    """Create or change a service's policy: the fields given change, the others keep their
    value (a new policy starts from the defaults). 422 names the field and the rule."""
    svc = await services.get_service(session, actor, ref, environment=environment)
    require(actor, "scale")
    policy = await policy_of(session, svc.id)
    before = dict(DEFAULTS) if policy is None else values_of(policy)
    after = merged(before, change)
    if policy is None:
        policy = ScalingPolicy(service_id=svc.id, environment_id=svc.environment_id)
        session.add(policy)
    for name, value in after.items():
        setattr(policy, name, value)
    policy.updated_at = utcnow()
    policy.last_decision = None
    await session.flush()
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    audit.record(session, actor, "scaling_policy", "service", svc.id, changed)
    return policy, svc


async def delete_policy(
    session: AsyncSession, actor: Principal, ref: str, *, environment: str | None = None
) -> None:
    policy, svc = await get_policy(session, actor, ref, environment=environment)
    require(actor, "scale")
    await session.delete(policy)
    audit.record(session, actor, "delete", "scaling_policy", svc.id, {})


async def list_events(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    *,
    environment: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> Sequence[ScalingEvent]:
    """A service's scaling events, newest first."""
    svc = await services.get_service(session, actor, ref, environment=environment)
    query = (
        sa.select(ScalingEvent)
        .where(ScalingEvent.service_id == svc.id)
        .order_by(ScalingEvent.timestamp.desc(), ScalingEvent.id)
        .limit(limit)
    )
    if since is not None:
        query = query.where(ScalingEvent.timestamp >= since)
    return (await session.scalars(query)).all()


#: The longest range a simulation replays.
SIMULATE_MAX = timedelta(days=31)


async def simulate(
    session: AsyncSession, db: Database, actor: Principal, ref: str, body: SimulateRequest
) -> SimulateResult:
    """Replay the stored metrics (or `body.trace`) through the saved policy with `body.policy`
    applied (or the defaults with it, for a service without a policy). Records nothing."""
    svc = await services.get_service(session, actor, ref)
    if body.end <= body.start:
        raise ValidationFailed("end", "must be after start")
    if body.end - body.start > SIMULATE_MAX:
        raise ValidationFailed("end", "must be at most 31 days after start")
    saved = await policy_of(session, svc.id)
    values = merged(
        dict(DEFAULTS) if saved is None else values_of(saved), body.policy or PolicySet()
    )
    row = ScalingPolicy(service_id=svc.id, environment_id=svc.environment_id, **values)
    policy = Policy.of(row)
    initial = body.initial_replicas or svc.target_replicas
    initial = min(max(initial, policy.min_instances), policy.max_instances)
    if body.trace is not None:
        points = [Datapoint(p.timestamp, p.cpu, p.memory, p.value) for p in body.trace]
        source = "trace"
    else:
        subject = Subject(
            row,
            svc.id,
            svc.name,
            await _env_name(session, svc),
            initial,
            svc.cpu_cores,
            svc.memory_mb,
            svc.status,
            svc.owner_id,
        )
        points = await simulation.stored_points(db, subject, policy, body.start, body.end)
        source = "stored"
    done = simulation.replay(policy, points, body.start, body.end, initial)
    return SimulateResult(
        service=svc.name,
        start=body.start,
        end=body.end,
        source=source,
        evaluations=done.evaluations,
        datapoints=sum(1 for p in points if any(v is not None for v in (p.cpu, p.memory, p.value))),
        initial=done.initial,
        final=done.final,
        peak=done.peak,
        replica_hours=round(done.replica_hours, 3),
        baseline_replica_hours=round(done.baseline_replica_hours, 3),
        steps=[SimulatedStep.model_validate(s, from_attributes=True) for s in done.steps],
    )
