"""The evaluator: one round evaluates every due enabled policy and carries out its decision
through the release engine (a `scale` deployment, as a manual scale), recording a scaling event.

Reading is batched so that a round over 10,000 policies took under a second in the runs
measured (docs/benchmarks.md): one query for
the cohorts' times and one for the policies with their services, one for the services with an
active rollout, one for the last scale-up and scale-down of each service, and per evaluation
period one read of the CPU and memory series (from rollups where they are done, raw samples
after them) summed per service and period. A policy on another metric reads it through the
metrics capability's `query.aggregate`, one period at a time. Each policy's rule and ids are
kept between rounds while its row reads the same (`Known`), and the garbage collector is paused
while a round reads and decides (`gc_paused`, 5 s at the most): the round's objects hold no
cycles.

Writing is small: the evaluation is recorded once per cohort of policies evaluated together
(`mark_evaluated`), and a policy's row only when its decision's sentence changed.

CPU is the replicas' CPU percent relative to the service's `cpu_cores`; memory is the replicas'
memory relative to the service's `memory_mb`; both averaged over the replicas and the period.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.autoscaling import events as scaling_events
from pilothouse.autoscaling.models import ScalingCohort, ScalingEvent, ScalingPolicy
from pilothouse.autoscaling.rules import (
    Datapoint,
    Decision,
    LastEvents,
    Policy,
    decide,
    json_value,
)
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


#: The longest the collector stays paused for a round (a stalled store must not keep it off).
GC_PAUSE_LIMIT = 5.0


@contextmanager
def gc_paused(at_most: float = GC_PAUSE_LIMIT) -> Iterator[None]:
    """No automatic garbage collection inside, for `at_most` seconds at the most (a cycle made
    meanwhile, by this or another task, is collected after). The pause spans the round's
    awaits, so it is bounded: a store that stalls the read does not keep the collector off for
    the other tasks of the process. Inside another pause, nothing more."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            at_most, gc.enable
        )
    except RuntimeError:  # no event loop: nothing else can run meanwhile
        timer = None
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        gc.enable()


@dataclass
class Subject:
    """One policy with what the decision needs about its service."""

    policy: Any  # a scaling_policies row (Core row or ORM object: attributes by column name)
    service_id: uuid.UUID
    service: str
    environment: str
    replicas: int
    cpu_cores: float
    memory_mb: int
    status: str
    owner_id: uuid.UUID | None  # not read by a round: the change reads the service again
    rule: Policy | None = None  # the policy's rule, when already built (else Policy.of(policy))


@dataclass
class Round:
    evaluated: int = 0
    scaled: int = 0
    failed: int = 0
    decisions: dict[uuid.UUID, Decision] = field(default_factory=dict)
    #: Wall seconds per phase (read, events, windows, decide, write, carry out): the bench's.
    phases: dict[str, float] = field(default_factory=dict)

    def lap(self, phase: str, began: float) -> float:
        """Add the time since `began` to `phase`; returns now (the next phase's start)."""
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - began
        return now


#: The metrics of a policy on its own metric (rules.Policy.metrics).
VALUE = ("value",)


@dataclass
class SeriesMap:
    """The CPU and memory series of services: id -> (service id, name). Series are never
    deleted nor moved, so each round only reads those created since (ids above `upto`)."""

    upto: int = 0
    owner: dict[int, tuple[uuid.UUID, str]] = field(default_factory=dict)
    #: service id -> its series: (series id, 0 for CPU or 1 for memory)
    by_service: dict[uuid.UUID, list[tuple[int, int]]] = field(default_factory=dict)


_SERIES: weakref.WeakKeyDictionary[Database, SeriesMap] = weakref.WeakKeyDictionary()


async def series_map(session: AsyncSession, db: Database) -> SeriesMap:
    known = _SERIES.setdefault(db, SeriesMap())
    conn = await session.connection()
    rows = await conn.execute(
        sa.select(MetricSeries.id, MetricSeries.service_id, MetricSeries.name).where(
            MetricSeries.name.in_((CPU, MEMORY)),
            MetricSeries.service_id.is_not(None),
            MetricSeries.id > known.upto,
        )
    )
    for series_id, service_id, name in rows:
        if service_id is not None:
            known.owner[series_id] = (service_id, name)
            which = 0 if name == CPU else 1
            known.by_service.setdefault(service_id, []).append((series_id, which))
        known.upto = max(known.upto, series_id)
    return known


async def window_lists(
    session: AsyncSession,
    db: Database,
    subjects: Sequence[Subject],
    period: int,
    count: int,
    now: datetime,
) -> list[list[Datapoint]]:
    """Per subject (in the order of `subjects`), `count` datapoints of `period` seconds ending
    `now` (oldest first): its service's CPU and memory averages, from rollups where rolled up,
    raw samples after."""
    now_s = int(now.timestamp())
    start = now_s - period * count
    done = await progress(session)
    # Rollups serve periods that are whole buckets; each bucket counts in the period its end
    # falls in (so a datapoint may lag the exact period by less than one bucket).
    res = next((r for r in (300, 60) if period % r == 0), None)
    rolled_to = min(done.get(res, 0), now_s) if res else 0
    names = (CPU, MEMORY)
    chosen = sa.select(MetricSeries.id).where(
        MetricSeries.name.in_(names), MetricSeries.service_id.is_not(None)
    )
    if len(subjects) <= 500:
        chosen = chosen.where(MetricSeries.service_id.in_({s.service_id for s in subjects}))
    # Plain numbers per bucket, mapped to services through the series map (no join, no UUID
    # per row: decoding 10,000s of them was most of a round), summed into flat lists at
    # (subject, metric, period) offsets.
    by_service = (await series_map(session, db)).by_service
    slot_of: dict[int, int] = {}
    for i, s in enumerate(subjects):
        for series_id, which in by_service.get(s.service_id, ()):
            slot_of[series_id] = (i * 2 + which) * count
    conn = await session.connection()
    totals = [0.0] * (len(subjects) * 2 * count)
    counts = [0.0] * len(totals)

    def add(rows: Iterable[Any]) -> None:
        for series_id, k, total, n in rows:
            base = slot_of.get(series_id)
            if base is None or not n or not 0 <= k < count:
                continue
            totals[base + k] += total
            counts[base + k] += n

    raw_from = start
    if res and rolled_to > start and slot_of:
        k = (sa.literal(now_s, sa.BigInteger) - MetricRollup.bucket - res) // period
        rolled = await conn.execute(
            sa.select(MetricRollup.series_id, k, MetricRollup.sum, MetricRollup.count).where(
                MetricRollup.series_id.in_(chosen),
                MetricRollup.resolution == res,
                MetricRollup.bucket > start - res,
                MetricRollup.bucket <= rolled_to - res,  # (bucket + res <= rolled_to, sargable)
            )
        )
        add(rolled.all())
        raw_from = rolled_to
    ts = metric_samples.c.ts
    k_raw = (sa.literal(now_s * 1000, sa.BigInteger) - ts) // (period * 1000)
    if slot_of:
        raw = await conn.execute(
            sa.select(
                metric_samples.c.series_id,
                k_raw,
                sa.func.sum(metric_samples.c.value),
                sa.func.count(),
            )
            .where(
                metric_samples.c.series_id.in_(chosen),
                ts > raw_from * 1000,
                ts <= now_s * 1000,
            )
            .group_by(metric_samples.c.series_id, k_raw)
        )
        add(raw.all())
    return _datapoints(subjects, totals, counts, period, count, now)


def _datapoints(
    subjects: Sequence[Subject],
    totals: list[float],
    counts: list[float],
    period: int,
    count: int,
    now: datetime,
) -> list[list[Datapoint]]:
    """Each subject's `count` datapoints from its sums and counts (window_lists' slots)."""
    ends = [now - timedelta(seconds=period * index) for index in range(count)]
    back = range(count - 1, -1, -1)
    out: list[list[Datapoint]] = []
    for i, s in enumerate(subjects):
        cores = max(s.cpu_cores, 0.01)
        limit = max(s.memory_mb, 1) * MIB / 100.0
        cpu_at, mem_at = i * 2 * count, (i * 2 + 1) * count
        out.append(
            [
                Datapoint(
                    ends[k],
                    totals[cpu_at + k] / counts[cpu_at + k] / cores if counts[cpu_at + k] else None,
                    totals[mem_at + k] / counts[mem_at + k] / limit if counts[mem_at + k] else None,
                )
                for k in back
            ]
        )
    return out


async def metric_window(
    db: Database, subject: Subject, policy: Policy, count: int, now: datetime
) -> list[Datapoint]:
    """`count` datapoints of the policy's own metric (per replica when asked), oldest first."""
    row = subject.policy
    tags = dict(json_value(row.metric_tags, {})) or {
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


#: The columns `rules.Policy.of` reads, in its order.
RULE_COLUMNS = tuple(f.name for f in dataclasses.fields(Policy))


@dataclass(slots=True)
class Known:
    """What a round keeps of a policy for the next: its rule columns as last read, the rule
    built from them, and its ids as UUIDs (decoding 30,000 UUIDs was a third of a round)."""

    values: tuple[Any, ...]
    rule: Policy
    pid: uuid.UUID
    service_id: uuid.UUID
    service_key: str


#: policy id as text -> what the last round read of it. A round reuses an entry only when the
#: policy's rule columns and service are the same as read now (so a changed policy takes effect
#: in the next round), and keeps only the policies it read (a deleted one is dropped).
_KNOWN: dict[str, Known] = {}


async def load_subjects(
    session: AsyncSession, now: datetime, slack: float
) -> tuple[list[Subject], dict[uuid.UUID | None, list[tuple[uuid.UUID, int]]]]:
    """The enabled policies due now (their period elapsed since their last evaluation, less
    `slack` seconds), with their live services and their rules; and the due ones' ids and
    periods by cohort (None: never evaluated)."""
    table = ScalingPolicy.__table__
    # Core rows through the connection, not ORM objects: a round reads thousands and only
    # looks at them. The JSON columns as text, decoded only when not empty (rules.json_value);
    # the ids as text, made UUIDs once per policy (Known).
    rule_columns = [
        sa.cast(table.c[name], sa.Text).label(name)
        if name == "schedules"
        else sa.type_coerce(table.c[name], sa.String())
        if name == "mode"
        else table.c[name]
        for name in RULE_COLUMNS
    ]
    n = len(rule_columns)
    conn = await session.connection()
    # The cohorts' times apart (a few rows, not one datetime per policy).
    cohort_rows = await conn.execute(
        sa.select(sa.cast(ScalingCohort.id, sa.Text), ScalingCohort.evaluated_at)
    )
    evaluated = {cohort: at for cohort, at in cohort_rows}
    found = await conn.execute(
        sa.select(
            *rule_columns,
            sa.cast(table.c.id, sa.Text),
            sa.cast(table.c.service_id, sa.Text),
            sa.cast(table.c.cohort_id, sa.Text),
            table.c.last_decision,
            sa.cast(table.c.metric_tags, sa.Text).label("metric_tags"),
            Service.name,
            Environment.name,
            Service.target_replicas,
            Service.cpu_cores,
            Service.memory_mb,
            sa.type_coerce(Service.status, sa.String()),
        )
        .join(Service, Service.id == table.c.service_id)
        .join(Environment, Environment.id == Service.environment_id)
        .where(table.c.enabled.is_(True), Service.deleted_at.is_(None))
    )
    return _subjects(found.all(), n, evaluated, now, slack)


def _subjects(
    rows: Sequence[Any],
    n: int,
    evaluated: dict[str, datetime],
    now: datetime,
    slack: float,
) -> tuple[list[Subject], dict[uuid.UUID | None, list[tuple[uuid.UUID, int]]]]:
    """load_subjects' rows (`n` rule columns first) as subjects, the due ones only."""
    global _KNOWN
    out = []
    cohorts: dict[str | None, list[tuple[uuid.UUID, int]]] = {}
    known, _KNOWN = _KNOWN, {}
    for row in rows:
        values = row[:n]
        (
            key,
            service_key,
            cohort,
            last_decision,
            tags,
            name,
            env,
            replicas,
            cores,
            memory,
            status,
        ) = row[n:]
        entry = known.get(key)
        if entry is None or entry.values != values or entry.service_key != service_key:
            rule = Policy.of(SimpleNamespace(**dict(zip(RULE_COLUMNS, values, strict=True))))
            entry = Known(values, rule, uuid.UUID(key), uuid.UUID(service_key), service_key)
        _KNOWN[key] = entry
        rule = entry.rule
        at = evaluated.get(cohort) if cohort is not None else None
        if at is not None and (now - at).total_seconds() < rule.evaluation_period_seconds - slack:
            continue
        cohorts.setdefault(cohort, []).append((entry.pid, rule.evaluation_period_seconds))
        # Plain attributes: a Row's (and its mapping's) are several times slower to read.
        policy = SimpleNamespace(id=entry.pid, last_decision=last_decision, metric_tags=tags)
        out.append(
            Subject(
                policy, entry.service_id, name, env, replicas, cores, memory, status, None, rule
            )
        )
    return out, {uuid.UUID(c) if c is not None else None: due for c, due in cohorts.items()}


async def mark_evaluated(
    session: AsyncSession,
    due: dict[uuid.UUID | None, list[tuple[uuid.UUID, int]]],
    now: datetime,
) -> None:
    """Record that the `due` policies ((id, period) by cohort) were evaluated at `now`.

    A cohort all of whose policies were due is one row updated, whatever its size; that is
    every cohort in a steady state, as policies evaluated together stay due together. The
    others (new policies, and those split from a cohort: another period, or disabled or deleted
    services' policies left behind) move row by row, by period: into a whole cohort of this
    round holding only that period, else into a new one. So the cohorts of a period number at
    most its phases (period / the loop's interval: 20 for 5 minutes every 15 s).
    """
    counted = await session.execute(
        sa.select(ScalingPolicy.cohort_id, sa.func.count())
        .where(ScalingPolicy.cohort_id.in_([c for c in due if c is not None]))
        .group_by(ScalingPolicy.cohort_id)
    )
    members = {cohort: int(n) for cohort, n in counted}
    home: dict[int, uuid.UUID] = {}  # period -> a whole cohort of only that period
    moving: dict[int, list[uuid.UUID]] = {}
    for cohort, policies in due.items():
        if cohort is not None and members.get(cohort) == len(policies):
            periods = {period for _, period in policies}
            if len(periods) == 1:
                home.setdefault(periods.pop(), cohort)
            continue
        for pid, period in policies:
            moving.setdefault(period, []).append(pid)
    whole = [c for c in due if c is not None and members.get(c) == len(due[c])]
    if whole:
        await session.execute(
            sa.update(ScalingCohort).where(ScalingCohort.id.in_(whole)).values(evaluated_at=now)
        )
    table: sa.Table = ScalingPolicy.__table__  # type: ignore[assignment]
    for period, ids in moving.items():
        target = home.get(period)
        if target is None:
            cohort_ = ScalingCohort(evaluated_at=now)
            session.add(cohort_)
            await session.flush()
            target = home[period] = cohort_.id
        for chunk in range(0, len(ids), 5000):
            await session.execute(
                sa.update(table)
                .where(table.c.id.in_(ids[chunk : chunk + 5000]))
                # Not a change of the policy: its updated_at stays.
                .values(cohort_id=target, updated_at=table.c.updated_at)
            )
    # Cohorts left empty (their policies moved or deleted): one pass over the policies.
    await session.execute(
        sa.delete(ScalingCohort).where(
            ScalingCohort.id.not_in(
                sa.select(ScalingPolicy.cohort_id).where(ScalingPolicy.cohort_id.is_not(None))
            )
        )
    )


async def last_events(
    session: AsyncSession, service_ids: Sequence[uuid.UUID], since: datetime
) -> dict[uuid.UUID, LastEvents]:
    """When each service last grew and shrank, and when an attempt either way was last refused
    (events since `since`): a refused attempt starts the cooldown too (rules.cooldown). Only
    the services with such an event are in it (NO_EVENTS for the others), and with more than
    500 `service_ids` maybe others too."""
    grew = sa.case(
        (ScalingEvent.instances_after > ScalingEvent.instances_before, True), else_=False
    )
    query_ = (
        sa.select(
            ScalingEvent.service_id,
            grew,
            ScalingEvent.success,
            sa.func.max(ScalingEvent.timestamp),
        )
        .where(ScalingEvent.timestamp >= since)
        .group_by(ScalingEvent.service_id, grew, ScalingEvent.success)
    )
    if len(service_ids) <= 500:
        query_ = query_.where(ScalingEvent.service_id.in_(service_ids))
    # (grew, success) -> service -> when
    found: dict[tuple[bool, bool], dict[uuid.UUID, datetime]] = {}
    for service_id, up, success, at in await session.execute(query_):
        found.setdefault((bool(up), bool(success)), {})[service_id] = at
    ups, downs = found.get((True, True), {}), found.get((False, True), {})
    failed_ups, failed_downs = found.get((True, False), {}), found.get((False, False), {})
    # Only the services with an event: most have none in a round (NO_EVENTS for them).
    return {
        s: LastEvents(ups.get(s), downs.get(s), failed_ups.get(s), failed_downs.get(s))
        for s in set().union(ups, downs, failed_ups, failed_downs)
    }


async def rolling_out(session: AsyncSession, service_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    query_ = sa.select(Deployment.service_id).where(Deployment.status.in_(ACTIVE_STATUSES))
    if len(service_ids) <= 500:
        query_ = query_.where(Deployment.service_id.in_(service_ids))
    return set(await session.scalars(query_))


#: A service's last events when it has none in the cooldowns.
NO_EVENTS = LastEvents()

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
    # The reading and deciding allocate some 100,000 objects, none in a reference cycle: with
    # the collector on, it ran 200 times a round and a full collection of the process's heap
    # once or twice among them, 0.2-0.35 s of a 0.5-0.6 s round (bench/autoscale.py).
    with gc_paused():
        decided = await _read_and_decide(db, now, slack, result)
    if decided is None:
        return result
    changes, reasons, due = decided
    began = time.perf_counter()
    if not apply:
        return result
    async with db.session() as session:
        await mark_evaluated(session, due, now)
        if reasons:
            table: sa.Table = ScalingPolicy.__table__  # type: ignore[assignment]
            await session.execute(
                sa.update(table)
                .where(table.c.id == sa.bindparam("pid"))
                .values(last_decision=sa.bindparam("why"), updated_at=table.c.updated_at),
                reasons,
            )
    began = result.lap("write", began)
    for s, decision in changes:
        message = await carry_out(db, s, decision, now)
        if message is None:  # stopped or deleted since it was read
            continue
        if message["success"]:
            result.scaled += 1
        else:
            result.failed += 1
        if send is not None:
            await send(message)
    result.lap("carry out", began)
    return result


async def _read_and_decide(
    db: Database, now: datetime, slack: float, result: Round
) -> (
    tuple[
        list[tuple[Subject, Decision]],
        list[dict[str, Any]],
        dict[uuid.UUID | None, list[tuple[uuid.UUID, int]]],
    ]
    | None
):
    """evaluate_round's reading and deciding (its decisions into `result`): the changes to carry
    out, the new sentences of the policies left as they are, and the due policies by cohort;
    None when no policy is due."""
    began = time.perf_counter()
    async with db.session(write=False) as session:
        subjects, due = await load_subjects(session, now, slack)
        began = result.lap("read policies", began)
        if not subjects:
            return None
        ids = [s.service_id for s in subjects]
        rules = [s.rule or Policy.of(s.policy) for s in subjects]
        longest = max(
            max(p.scale_up_cooldown_seconds, p.scale_down_cooldown_seconds) for p in rules
        )
        began = result.lap("policy objects", began)
        last = await last_events(session, ids, now - timedelta(seconds=longest))
        busy = await rolling_out(session, ids)
        began = result.lap("events and rollouts", began)
        # Each subject's window, by its position in `subjects`.
        windows: list[list[Datapoint]] = [[] for _ in subjects]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(rules):
            if p.metrics != VALUE:
                groups.setdefault((p.evaluation_period_seconds, p.periods), []).append(i)
        for (period, count), members in groups.items():
            found = await window_lists(
                session, db, [subjects[i] for i in members], period, count, now
            )
            for i, window in zip(members, found, strict=True):
                windows[i] = window
    for i, p in enumerate(rules):
        if p.metrics == VALUE:
            windows[i] = await metric_window(db, subjects[i], p, p.periods, now)
    began = result.lap("windows", began)
    changes, reasons = _decide_all(subjects, rules, windows, last, busy, now, result.decisions)
    result.evaluated += len(subjects)
    result.lap("decide", began)
    return changes, reasons, due


def _decide_all(
    subjects: Sequence[Subject],
    rules: Sequence[Policy],
    windows: Sequence[list[Datapoint]],
    last: dict[uuid.UUID, LastEvents],
    busy: set[uuid.UUID],
    now: datetime,
    decisions: dict[uuid.UUID, Decision],
) -> tuple[list[tuple[Subject, Decision]], list[dict[str, Any]]]:
    """Every subject's decision (into `decisions`); returns the changes to carry out and the
    new sentences of the policies left as they are."""
    changes: list[tuple[Subject, Decision]] = []
    reasons: list[dict[str, Any]] = []
    last_of = last.get
    for s, p, window in zip(subjects, rules, windows, strict=True):
        if s.status == "stopped":
            decision = Decision("none", s.replicas, s.replicas, "the service is stopped")
        else:
            decision = decide(
                p,
                window,
                s.replicas,
                last_of(s.service_id, NO_EVENTS),
                s.service_id in busy,
                now,
            )
        decisions[s.service_id] = decision
        if decision.action != "none":
            changes.append((s, decision))
        elif decision.reason != s.policy.last_decision:
            reasons.append({"pid": s.policy.id, "why": decision.reason})
    return changes, reasons


async def carry_out(
    db: Database, s: Subject, decision: Decision, now: datetime
) -> dict[str, Any] | None:
    """Scale through the release engine and record the event (also when refused); returns the
    alert channels' message. Nothing at all when the service was stopped or deleted since the
    round read it: that is checked again here, in the change's own transaction with the
    service's row locked, so a stop landing mid-round is never undone by a scale."""
    try:
        async with db.session() as session:
            svc = await _live_service(session, s.service_id)
            if svc is None:
                log.info("not scaled: stopped or deleted meanwhile", service=s.service)
                return None
            svc, deployment = await deployments.scale(
                session, autoscaler(svc.owner_id), str(s.service_id), decision.after, manual=False
            )
            message = _record(session, s, svc, decision, now, deployment.id if deployment else None)
            policy = await session.get(ScalingPolicy, s.policy.id)
            if policy is not None:
                policy.last_decision = decision.reason
    except PilothouseError as exc:
        error = exc.message
    else:
        log.info(
            "scaled",
            service=s.service,
            before=decision.before,
            after=decision.after,
            reason=decision.reason,
        )
        return message
    async with db.session() as session:
        svc = await _live_service(session, s.service_id)
        if svc is None:
            return None
        message = _record(session, s, svc, decision, now, error=error)
    log.warning("scaling refused", service=s.service, error=error)
    return message


async def _live_service(session: AsyncSession, service_id: uuid.UUID) -> Service | None:
    """The service, read afresh and locked for the transaction; None when it is stopped or
    deleted."""
    svc = await session.get(Service, service_id, with_for_update=True, populate_existing=True)
    if svc is None or svc.deleted_at is not None or svc.status in ("stopped", "deleted"):
        return None
    return svc


def _record(
    session: AsyncSession,
    s: Subject,
    svc: Service,
    decision: Decision,
    now: datetime,
    deployment_id: uuid.UUID | None = None,
    *,
    error: str | None = None,
) -> dict[str, Any]:
    """The autoscaler's event for `decision` (failed when `error`), and its message."""
    event = scaling_events.record_event(
        session,
        svc,
        action=decision.action,
        before=decision.before,
        after=decision.after,
        reason=decision.reason,
        triggered_by="autoscaler",
        success=error is None,
        error=error,
        cpu=decision.cpu,
        memory=decision.memory,
        deployment_id=deployment_id,
        at=now,
    )
    return scaling_events.event_message(s.service, s.environment, event)


async def retain(db: Database, before: datetime) -> int:
    """Delete scaling events older than `before` (kept 90 days by default)."""
    async with db.session() as session:
        result = await session.execute(
            sa.delete(ScalingEvent).where(ScalingEvent.timestamp < before)
        )
    return int(getattr(result, "rowcount", 0) or 0)
