"""Metric services: push ingestion, series (list, show, thresholds, retention), queries and
alert rules, with the caller's rights. Services never commit."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import INGEST, Principal, granted_environment_ids, require
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.environments import service as environments
from pilothouse.environments.models import Environment
from pilothouse.errors import Conflict, Forbidden, NotFound, ValidationFailed
from pilothouse.metrics.models import MetricAlertRule, MetricIncident, MetricSeries
from pilothouse.metrics.push import FastSample, write_pushed_in
from pilothouse.metrics.query import STATS, Group, matching_series, run_query
from pilothouse.metrics.samples import Sample, write_samples_in
from pilothouse.metrics.schemas import (
    RuleCreate,
    RuleUpdate,
    SeriesUpdate,
    parse_duration,
)
from pilothouse.services import service as services
from pilothouse.services.models import Service


async def ingest_environment(
    session: AsyncSession, actor: Principal, ref: str | None
) -> Environment:
    """The environment a push goes to: an ingest token's own (another one named is refused),
    else the named one the caller can see."""
    require(actor, "ingest_metrics")
    if actor.role == INGEST:
        env = await session.get(Environment, actor.environment_id)
        if env is None or env.deleted_at is not None:
            raise NotFound("the ingest token's environment no longer exists")
        if ref is not None and ref not in (env.name, str(env.id)):
            raise Forbidden(f"this ingest token pushes into environment {env.name!r} only")
        return env
    if ref is None:
        raise ValidationFailed("environment", "required: the environment the samples belong to")
    return await environments.get_environment(session, actor, ref)


async def ingest_pushed(
    session: AsyncSession,
    dialect: str,
    env: Environment,
    samples: Sequence[FastSample],
    now: datetime,
) -> int:
    """Store a checked JSON push in `env` (its environment tag forced: a push cannot write
    elsewhere); samples without a timestamp are at `now`."""
    return await write_pushed_in(session, dialect, samples, env.name, env.id, now)


async def ingest(
    session: AsyncSession, dialect: str, env: Environment, samples: Sequence[Sample]
) -> int:
    """Store pushed samples in `env` (tags forced to it: a push cannot write elsewhere)."""
    placed = [
        s
        if s.tags.get("environment") == env.name
        else Sample(s.name, {**s.tags, "environment": env.name}, s.value, s.at, s.unit, s.source)
        for s in samples
    ]
    return await write_samples_in(session, dialect, placed, environment_id=env.id)


def _environments(actor: Principal) -> sa.Select[Any]:
    """Ids of the environments a non-admin owns or was granted."""
    return sa.select(Environment.id).where(
        sa.or_(
            Environment.owner_id == actor.id,
            Environment.id.in_(granted_environment_ids(actor)),
        )
    )


def _visible(actor: Principal) -> sa.ColumnElement[bool]:
    """Series the actor may read: those in environments it can see (admins: all)."""
    require(actor, "read")
    if actor.is_admin:
        return sa.true()
    return MetricSeries.environment_id.in_(_environments(actor))


async def list_series(
    session: AsyncSession,
    actor: Principal,
    *,
    name: str | None = None,
    environment: str | None = None,
    limit: int = 500,
) -> Sequence[MetricSeries]:
    """Series the actor can see, optionally by name prefix and environment."""
    query = sa.select(MetricSeries).where(_visible(actor))
    if name:
        query = query.where(MetricSeries.name.startswith(name, autoescape=True))
    if environment:
        env = await environments.get_environment(session, actor, environment)
        query = query.where(MetricSeries.environment_id == env.id)
    query = query.order_by(MetricSeries.name, MetricSeries.id).limit(limit)
    return (await session.scalars(query)).all()


async def get_series(session: AsyncSession, actor: Principal, series_id: int) -> MetricSeries:
    """One series the actor can see, or NotFound."""
    found = await session.scalar(
        sa.select(MetricSeries).where(MetricSeries.id == series_id, _visible(actor))
    )
    if found is None:
        raise NotFound(f"metric series {series_id} not found")
    return found


async def update_series(
    session: AsyncSession, actor: Principal, series_id: int, changes: SeriesUpdate
) -> MetricSeries:
    """Set thresholds, baseline, unit or retention overrides of a series."""
    series = await get_series(session, actor, series_id)
    require(actor, "manage_metrics")
    fields = changes.model_dump(exclude_unset=True)
    if "unit" in fields and fields["unit"] is None:
        fields["unit"] = ""
    for key, value in fields.items():
        setattr(series, key, value)  # keys are SeriesUpdate's typed fields only
    return series


async def query(
    session: AsyncSession,
    actor: Principal,
    name: str,
    *,
    tags: Mapping[str, str],
    window: str,
    stats: Sequence[str],
    group_by: str | None = None,
    now: datetime | None = None,
) -> list[Group]:
    """Figures of metric `name` over `window` for the series the actor can see."""
    try:
        span = parse_duration(window)
    except ValueError as exc:
        raise ValidationFailed("window", str(exc)) from None
    unknown = [s for s in stats if s not in STATS]
    if unknown or not stats:
        raise ValidationFailed("stat", f"one or more of {', '.join(STATS)}")
    found = await matching_series(session, name, tags, _visible(actor))
    return await run_query(
        session, found, window=span, stats=stats, group_by=group_by, now=now or utcnow()
    )


def parse_tags(pairs: Sequence[str]) -> dict[str, str]:
    """`key=value` strings as a dict; ValidationFailed naming the bad one."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationFailed("tag", f"{pair!r} is not key=value")
        tags[key] = value
    return tags


def _window(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValidationFailed("window", str(exc)) from None


def _check_rule(rule: Mapping[str, Any]) -> None:
    """A rule's fields that only make sense together (ValidationFailed naming the field)."""
    if rule["for_m"] > rule["for_n"]:
        raise ValidationFailed("for_m", f"M ({rule['for_m']}) must not exceed N ({rule['for_n']})")
    if rule["warning"] is None and rule["critical"] is None:
        raise ValidationFailed("warning", "give a warning or a critical level (or both)")
    if rule["expression"] == "ratio" and not rule["per_metric"]:
        raise ValidationFailed("per_metric", "required for a ratio")


@dataclass(frozen=True)
class _Checked:
    window_seconds: int
    service_id: uuid.UUID | None
    environment_id: uuid.UUID | None


async def _checked(session: AsyncSession, actor: Principal, body: RuleCreate) -> _Checked:
    """The rule's window in seconds and where it sits, or a 422 naming the field."""
    window = _window(body.window)
    _check_rule(body.model_dump())
    service_id: uuid.UUID | None = None
    environment_id: uuid.UUID | None = None
    if body.service:
        svc = await services.get_service(session, actor, body.service, environment=body.environment)
        service_id, environment_id = svc.id, svc.environment_id
    elif body.environment:
        environment_id = (await environments.get_environment(session, actor, body.environment)).id
    else:  # a rule lives in an environment: who sees it, and where its incidents belong
        raise ValidationFailed("service", "give a service or an environment")
    return _Checked(int(window.total_seconds()), service_id, environment_id)


async def create_rule(session: AsyncSession, actor: Principal, body: RuleCreate) -> MetricAlertRule:
    """An alert rule on a metric (optionally of one service)."""
    require(actor, "manage_metrics")
    checked = await _checked(session, actor, body)
    service_id, environment_id = checked.service_id, checked.environment_id
    taken = await session.scalar(
        sa.select(MetricAlertRule.id).where(
            MetricAlertRule.name == body.name,
            MetricAlertRule.service_id.is_(None)
            if service_id is None
            else MetricAlertRule.service_id == service_id,
        )
    )
    if taken:
        raise Conflict(f"an alert rule named {body.name!r} already exists there")
    rule = MetricAlertRule(
        name=body.name,
        service_id=service_id,
        environment_id=environment_id,
        metric=body.metric,
        tags=dict(body.tags),
        expression=body.expression,
        per_metric=body.per_metric,
        window_seconds=checked.window_seconds,
        comparator=body.comparator,
        warning=body.warning,
        critical=body.critical,
        for_m=body.for_m,
        for_n=body.for_n,
        recover_n=body.recover_n,
        history=[],
        status="healthy",
    )
    session.add(rule)
    await session.flush()
    audit.record(session, actor, "create", "metric_alert_rule", rule.id, {"name": rule.name})
    return rule


async def get_rule(session: AsyncSession, actor: Principal, rule_id: uuid.UUID) -> MetricAlertRule:
    """An alert rule in an environment the actor can see; otherwise NotFound."""
    query = sa.select(MetricAlertRule).where(MetricAlertRule.id == rule_id)
    if not actor.is_admin:
        query = query.where(MetricAlertRule.environment_id.in_(_environments(actor)))
    rule = await session.scalar(query)
    if rule is None:
        raise NotFound(f"alert rule {rule_id} not found")
    return rule


async def update_rule(
    session: AsyncSession, actor: Principal, rule_id: uuid.UUID, body: RuleCreate
) -> MetricAlertRule:
    """Replace a rule's definition (its name and place stay); its history starts afresh when
    what it measures changes."""
    rule = await get_rule(session, actor, rule_id)
    require(actor, "manage_metrics")
    check = await _checked(session, actor, body)
    if (check.service_id, check.environment_id) != (rule.service_id, rule.environment_id):
        raise ValidationFailed("service", "a rule cannot move; delete it and create it anew")
    changes = {
        "metric": body.metric,
        "tags": dict(body.tags),
        "expression": body.expression,
        "per_metric": body.per_metric,
        "window_seconds": check.window_seconds,
        "comparator": body.comparator,
        "warning": body.warning,
        "critical": body.critical,
        "for_m": body.for_m,
        "for_n": body.for_n,
        "recover_n": body.recover_n,
    }
    changed = {k: v for k, v in changes.items() if getattr(rule, k) != v}
    for key, value in changed.items():
        setattr(rule, key, value)
    if changed.keys() & {"metric", "tags", "expression", "per_metric", "window_seconds"}:
        rule.history = []
    audit.record(session, actor, "update", "metric_alert_rule", rule.id, changed)
    return rule


async def delete_rule(session: AsyncSession, actor: Principal, rule_id: uuid.UUID) -> None:
    """Delete an alert rule (shipped defaults stay: switch them off instead)."""
    rule = await get_rule(session, actor, rule_id)
    require(actor, "manage_metrics")
    if rule.is_default:
        raise Conflict(f"alert rule {rule.name!r} is a shipped default; it cannot be deleted")
    await session.delete(rule)
    audit.record(session, actor, "delete", "metric_alert_rule", rule.id, {"name": rule.name})


async def list_rules(session: AsyncSession, actor: Principal) -> Sequence[MetricAlertRule]:
    """Alert rules in environments the actor can see."""
    require(actor, "read")
    query = sa.select(MetricAlertRule).order_by(MetricAlertRule.name, MetricAlertRule.id)
    if not actor.is_admin:
        query = query.where(MetricAlertRule.environment_id.in_(_environments(actor)))
    return (await session.scalars(query)).all()


#: Changing one of these starts the rule's evaluation history afresh.
DEFINITION = ("metric", "tags", "expression", "per_metric", "window_seconds", "comparator")


async def change_rule(
    session: AsyncSession, actor: Principal, rule_id: uuid.UUID, changes: RuleUpdate
) -> MetricAlertRule:
    """Change the fields given (PATCH; `update_rule` replaces a whole definition); a default
    rule can be tuned or paused like any other."""
    rule = await get_rule(session, actor, rule_id)
    require(actor, "manage_metrics")
    fields = changes.model_dump(exclude_unset=True)
    for key in ("metric", "expression", "comparator", "for_m", "for_n", "recover_n", "is_active"):
        if key in fields and fields[key] is None:
            raise ValidationFailed(key, "may not be null")
    if "window" in fields:
        if fields["window"] is None:
            raise ValidationFailed("window", "may not be null")
        fields["window_seconds"] = int(_window(fields.pop("window")).total_seconds())
    if "tags" in fields and fields["tags"] is None:
        fields["tags"] = {}
    merged = {
        key: fields.get(key, getattr(rule, key))
        for key in ("for_m", "for_n", "warning", "critical", "expression", "per_metric")
    }
    _check_rule(merged)
    before = {key: getattr(rule, key) for key in fields}
    for key, value in fields.items():
        setattr(rule, key, value)  # keys are RuleUpdate's typed fields only
    if any(key in DEFINITION and before[key] != fields[key] for key in fields):
        rule.history = []
    changed = {"changed": sorted(fields)}
    audit.record(session, actor, "update", "metric_alert_rule", rule.id, changed)
    await session.flush()
    return rule


async def list_incidents(
    session: AsyncSession, actor: Principal, *, service: str | None = None, open_only: bool = False
) -> list[tuple[MetricIncident, str, str]]:
    """Metric incidents newest first, each with its rule's and its service's name."""
    require(actor, "read")
    query = (
        sa.select(MetricIncident, MetricAlertRule.name, Service.name)
        .join(MetricAlertRule, MetricAlertRule.id == MetricIncident.rule_id)
        .outerjoin(Service, Service.id == MetricIncident.service_id)
        .order_by(MetricIncident.started_at.desc())
        .limit(200)
    )
    if not actor.is_admin:
        query = query.where(MetricAlertRule.environment_id.in_(_environments(actor)))
    if service:
        svc = await services.get_service(session, actor, service)
        query = query.where(MetricIncident.service_id == svc.id)
    if open_only:
        query = query.where(MetricIncident.ended_at.is_(None))
    return [(row, rule, name or "") for row, rule, name in (await session.execute(query)).all()]
