"""The evaluator: one round evaluates every due enabled policy and carries out its decision
through the release engine (a `scale` deployment, as a manual scale), recording a scaling event.

Reading is batched so a round over thousands of policies stays well under a second: one query
for the policies with their services, one for the services with an active rollout, one for the
last scale-up and scale-down of each service, and per evaluation period one aggregate over the
CPU and memory series (from rollups where they are done, raw samples after them), grouped by
service and period in the store. A policy on another metric reads it through the metrics
capability's `query.aggregate`, one period at a time.

CPU is the replicas' CPU percent relative to the service's `cpu_cores`; memory is the replicas'
memory relative to the service's `memory_mb`; both averaged over the replicas and the period.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.autoscaling import events as scaling_events
from pilothouse.autoscaling.models import ScalingEvent, ScalingPolicy
from pilothouse.autoscaling.rules import Datapoint, Decision, LastEvents, Policy, decide
from pilothouse.core.db import Database
from pilothouse.core.logging import get_logger
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import ACTIVE_STATUSES, Deployment
from pilothouse.environments.models import Environment
from pilothouse.errors import PilothouseError
from pilothouse.metrics import query
from pilothouse.metrics.models import MetricRollup, MetricSeries, metric_samples
from pilothouse.metrics.storage import progress
from pilothouse.services.models import Service

log = get_logger("pilothouse.autoscaling")


def autoscaler(owner_id: uuid.UUID) -> Principal:
    """Who scales: the autoscaler, on behalf of the service's owner (a deployment is owned by a
    user, as an automatic rollback is by the failed deployment's owner)."""
    return Principal(id=owner_id, name="autoscaler", role="admin")


CPU = "pilothouse_replica_cpu_percent"
MEMORY = "pilothouse_replica_memory_bytes"
MIB = 1024.0 * 1024.0


@dataclass
class Subject:
    """One policy with what the decision needs about its service."""

    policy: ScalingPolicy
    service_id: uuid.UUID
    service: str
    environment: str
    replicas: int
    cpu_cores: float
    memory_mb: int
    status: str
    owner_id: uuid.UUID


@dataclass
class Round:
    evaluated: int = 0
    scaled: int = 0
    failed: int = 0
    decisions: dict[uuid.UUID, Decision] = field(default_factory=dict)


def periods_needed(policy: Policy) -> int:
    return max(math.ceil(policy.window_seconds() / policy.evaluation_period_seconds), 1)


async def builtin_windows(
    session: AsyncSession,
    subjects: Sequence[Subject],
    period: int,
    count: int,
    now: datetime,
) -> dict[uuid.UUID, list[Datapoint]]:
    """Per service, `count` datapoints of `period` seconds ending `now` (oldest first): CPU and
    memory averages, from rollups where rolled up, raw samples after."""
    now_s = int(now.timestamp())
    start = now_s - period * count
    done = await progress(session)
    res = next((r for r in (300, 60) if period % r == 0), 60)
    rolled_to = min(done.get(res, 0), now_s)
    aligned = -(-start // res) * res
    sums: dict[tuple[uuid.UUID, str, int], list[float]] = {}
    wanted = {s.service_id for s in subjects}
    names = (CPU, MEMORY)
    series_filter = [MetricSeries.name.in_(names), MetricSeries.service_id.is_not(None)]
    if len(wanted) <= 500:
        series_filter.append(MetricSeries.service_id.in_(wanted))

    def add(rows: Iterable[Any]) -> None:
        for service_id, name, k, total, n in rows:
            if service_id not in wanted or not n:
                continue
            index = min(max(int(k), 0), count - 1)
            slot = sums.setdefault((service_id, name, index), [0.0, 0.0])
            slot[0] += float(total)
            slot[1] += float(n)

    if rolled_to > aligned:
        k = (sa.literal(now_s, sa.BigInteger) - MetricRollup.bucket - res) / period
        add(
            await session.execute(
                sa.select(
                    MetricSeries.service_id,
                    MetricSeries.name,
                    k,
                    sa.func.sum(MetricRollup.sum),
                    sa.func.sum(MetricRollup.count),
                )
                .join(MetricSeries, MetricSeries.id == MetricRollup.series_id)
                .where(
                    *series_filter,
                    MetricRollup.resolution == res,
                    MetricRollup.bucket >= aligned,
                    MetricRollup.bucket + res <= rolled_to,
                )
                .group_by(MetricSeries.service_id, MetricSeries.name, k)
            )
        )
        raw_from = rolled_to
    else:
        raw_from = start
    ts = metric_samples.c.ts
    k_raw = (sa.literal(now_s * 1000, sa.BigInteger) - ts) / (period * 1000)
    raw_where = [ts > start * 1000, ts <= now_s * 1000]
    if raw_from > start:
        raw_where.append(sa.or_(ts < aligned * 1000, ts >= raw_from * 1000))
    add(
        await session.execute(
            sa.select(
                MetricSeries.service_id,
                MetricSeries.name,
                k_raw,
                sa.func.sum(metric_samples.c.value),
                sa.func.count(),
            )
            .join(MetricSeries, MetricSeries.id == metric_samples.c.series_id)
            .where(*series_filter, *raw_where)
            .group_by(MetricSeries.service_id, MetricSeries.name, k_raw)
        )
    )
    out: dict[uuid.UUID, list[Datapoint]] = {}
    for s in subjects:
        points = []
        for index in range(count - 1, -1, -1):
            cpu = sums.get((s.service_id, CPU, index))
            mem = sums.get((s.service_id, MEMORY, index))
            points.append(
                Datapoint(
                    end=now - timedelta(seconds=period * index),
                    cpu=None if cpu is None else cpu[0] / cpu[1] / max(s.cpu_cores, 0.01),
                    memory=None
                    if mem is None
                    else 100.0 * mem[0] / mem[1] / (max(s.memory_mb, 1) * MIB),
                )
            )
        out[s.service_id] = points
    return out


async def metric_window(
    db: Database, subject: Subject, policy: Policy, count: int, now: datetime
) -> list[Datapoint]:
    """`count` datapoints of the policy's own metric (per replica when asked), oldest first."""
    row = subject.policy
    tags = dict(row.metric_tags or {}) or {
        "service": subject.service,
        "environment": subject.environment,
    }
    period = timedelta(seconds=policy.evaluation_period_seconds)
    points = []
    for index in range(count - 1, -1, -1):
        end = now - period * index
        groups = await query.aggregate(
            db, policy.metric, tags, window=period, stat=policy.metric_stat, now=end
        )
        value = groups.get("")
        if value is not None and policy.metric_per_replica:
            value = value / max(subject.replicas, 1)
        points.append(Datapoint(end=end, value=value))
    return points


async def load_subjects(session: AsyncSession, now: datetime, slack: float) -> list[Subject]:
    """The enabled policies due now (their period elapsed since their last evaluation, less
    `slack` seconds), with their live services."""
    rows = await session.execute(
        sa.select(
            ScalingPolicy,
            Service.name,
            Environment.name,
            Service.target_replicas,
            Service.cpu_cores,
            Service.memory_mb,
            Service.status,
            Service.owner_id,
        )
        .join(Service, Service.id == ScalingPolicy.service_id)
        .join(Environment, Environment.id == Service.environment_id)
        .where(ScalingPolicy.enabled.is_(True), Service.deleted_at.is_(None))
    )
    out = []
    for policy, name, env, replicas, cores, memory, status, owner in rows:
        at = policy.evaluated_at
        if at is not None and (now - at).total_seconds() < policy.evaluation_period_seconds - slack:
            continue
        out.append(
            Subject(policy, policy.service_id, name, env, replicas, cores, memory, status, owner)
        )
    return out


async def last_events(
    session: AsyncSession, service_ids: Sequence[uuid.UUID], since: datetime
) -> dict[uuid.UUID, LastEvents]:
    """When each service last grew and shrank (successful events since `since`)."""
    grew = sa.case(
        (ScalingEvent.instances_after > ScalingEvent.instances_before, True), else_=False
    )
    query_ = (
        sa.select(ScalingEvent.service_id, grew, sa.func.max(ScalingEvent.timestamp))
        .where(ScalingEvent.success.is_(True), ScalingEvent.timestamp >= since)
        .group_by(ScalingEvent.service_id, grew)
    )
    if len(service_ids) <= 500:
        query_ = query_.where(ScalingEvent.service_id.in_(service_ids))
    ups: dict[uuid.UUID, datetime] = {}
    downs: dict[uuid.UUID, datetime] = {}
    for service_id, up, at in await session.execute(query_):
        (ups if up else downs)[service_id] = at
    return {s: LastEvents(ups.get(s), downs.get(s)) for s in service_ids}


async def rolling_out(session: AsyncSession, service_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    query_ = sa.select(Deployment.service_id).where(Deployment.status.in_(ACTIVE_STATUSES))
    if len(service_ids) <= 500:
        query_ = query_.where(Deployment.service_id.in_(service_ids))
    return set(await session.scalars(query_))


Send = Callable[[dict[str, Any]], Awaitable[Any]]


async def evaluate_round(
    db: Database,
    now: datetime,
    *,
    send: Send | None = None,
    slack: float = 0.0,
    apply: bool = True,
) -> Round:
    """Evaluate every due enabled policy at `now`; carry out and record what changes (unless
    `apply` is false: the bench's read-and-decide figure)."""
    result = Round()
    async with db.session(write=False) as session:
        subjects = await load_subjects(session, now, slack)
        if not subjects:
            return result
        ids = [s.service_id for s in subjects]
        policies = {s.service_id: Policy.of(s.policy) for s in subjects}
        longest = max(
            max(p.scale_up_cooldown_seconds, p.scale_down_cooldown_seconds)
            for p in policies.values()
        )
        last = await last_events(session, ids, now - timedelta(seconds=longest))
        busy = await rolling_out(session, ids)
        windows: dict[uuid.UUID, list[Datapoint]] = {}
        groups: dict[tuple[int, int], list[Subject]] = {}
        for s in subjects:
            p = policies[s.service_id]
            if p.metrics != ("value",):
                groups.setdefault((p.evaluation_period_seconds, periods_needed(p)), []).append(s)
        for (period, count), members in groups.items():
            windows.update(await builtin_windows(session, members, period, count, now))
    for s in subjects:
        p = policies[s.service_id]
        if p.metrics == ("value",):
            windows[s.service_id] = await metric_window(db, s, p, periods_needed(p), now)
    changes: list[tuple[Subject, Decision]] = []
    reasons: list[dict[str, Any]] = []
    for s in subjects:
        if s.status == "stopped":
            decision = Decision("none", s.replicas, s.replicas, "the service is stopped")
        else:
            decision = decide(
                policies[s.service_id],
                windows.get(s.service_id, []),
                s.replicas,
                last[s.service_id],
                s.service_id in busy,
                now,
            )
        result.decisions[s.service_id] = decision
        result.evaluated += 1
        if decision.action != "none":
            changes.append((s, decision))
        elif decision.reason != s.policy.last_decision:
            reasons.append({"pid": s.policy.id, "why": decision.reason})
    if not apply:
        return result
    async with db.session() as session:
        ids_ = [s.policy.id for s in subjects]
        for chunk in range(0, len(ids_), 5000):
            await session.execute(
                sa.update(ScalingPolicy)
                .where(ScalingPolicy.id.in_(ids_[chunk : chunk + 5000]))
                .values(evaluated_at=now)
            )
        if reasons:
            table: sa.Table = ScalingPolicy.__table__  # type: ignore[assignment]
            await session.execute(
                sa.update(table)
                .where(table.c.id == sa.bindparam("pid"))
                .values(last_decision=sa.bindparam("why")),
                reasons,
            )
    for s, decision in changes:
        message = await carry_out(db, s, decision, now)
        if message["success"]:
            result.scaled += 1
        else:
            result.failed += 1
        if send is not None:
            await send(message)
    return result


async def carry_out(db: Database, s: Subject, decision: Decision, now: datetime) -> dict[str, Any]:
    """Scale through the release engine and record the event (also when refused)."""
    error = None
    deployment_id = None
    try:
        async with db.session() as session:
            svc, deployment = await deployments.scale(
                session, autoscaler(s.owner_id), str(s.service_id), decision.after, manual=False
            )
            deployment_id = deployment.id if deployment else None
            event = scaling_events.record_event(
                session,
                svc,
                action=decision.action,
                before=decision.before,
                after=decision.after,
                reason=decision.reason,
                triggered_by="autoscaler",
                cpu=decision.cpu,
                memory=decision.memory,
                deployment_id=deployment_id,
                at=now,
            )
            policy = await session.get(ScalingPolicy, s.policy.id)
            if policy is not None:
                policy.last_decision = decision.reason
            message = scaling_events.event_message(s.service, s.environment, event)
    except PilothouseError as exc:
        error = exc.message
    if error is None:
        log.info(
            "scaled",
            service=s.service,
            before=decision.before,
            after=decision.after,
            reason=decision.reason,
        )
        return message
    async with db.session() as session:
        svc_row = await session.get(Service, s.service_id)
        assert svc_row is not None
        event = scaling_events.record_event(
            session,
            svc_row,
            action=decision.action,
            before=decision.before,
            after=decision.after,
            reason=decision.reason,
            triggered_by="autoscaler",
            success=False,
            error=error,
            cpu=decision.cpu,
            memory=decision.memory,
            at=now,
        )
        message = scaling_events.event_message(s.service, s.environment, event)
    log.warning("scaling refused", service=s.service, error=error)
    return message


async def retain(db: Database, before: datetime) -> int:
    """Delete scaling events older than `before` (kept 90 days by default)."""
    async with db.session() as session:
        result = await session.execute(
            sa.delete(ScalingEvent).where(ScalingEvent.timestamp < before)
        )
    return int(getattr(result, "rowcount", 0) or 0)
