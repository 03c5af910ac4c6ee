"""Alert rules at work: the seed 003 default rules, one evaluation pass over every active rule
(incidents opened, escalated, eased and recovered; messages to the alert channels), and series
status from thresholds.

Incidents follow healthchecks/incidents.py's decisions (one open incident per rule, one alert,
reminders, one recovery message) with the rule statuses mapped onto health severities
(warning -> degraded, critical -> unhealthy). Messages are sent after the pass commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.core.db import Database
from pilothouse.environments.models import Environment
from pilothouse.healthchecks.incidents import NOTIFIES, incident_action, reminder_due
from pilothouse.metrics.models import MetricAlertRule, MetricIncident, MetricSeries, metric_samples
from pilothouse.metrics.query import matching_series, run_query
from pilothouse.metrics.rules import keep_history, level_of, next_status, threshold_status
from pilothouse.services.models import Service

#: Metric names the default rules read (what the scraper and the sample app expose).
RESPONSE_TIME = "http_request_duration_ms"
REQUESTS = "http_requests_total"
ERRORS = "http_request_errors_total"
AS_HEALTH = {"healthy": "healthy", "warning": "degraded", "critical": "unhealthy"}
FROM_HEALTH = {v: k for k, v in AS_HEALTH.items()}


@dataclass(frozen=True)
class DefaultRule:
    name: str
    metric: str
    expression: str
    per_metric: str | None
    warning: float
    critical: float
    unit: str


#: Seed 003 targets: P95 < 2000 ms, average < 1000 ms, error rate < 1%. Breaching the target
#: warns; twice the target (5x for errors) is critical. 5-minute window, 2 of 3, 2 to recover.
DEFAULT_RULES = (
    DefaultRule("response-time-p95", RESPONSE_TIME, "p95", None, 2000.0, 4000.0, "ms"),
    DefaultRule("response-time-avg", RESPONSE_TIME, "avg", None, 1000.0, 2000.0, "ms"),
    DefaultRule("error-rate", ERRORS, "ratio", REQUESTS, 1.0, 5.0, "%"),
)
DEFAULT_WINDOW = 300
DEFAULT_FOR = (2, 3)
DEFAULT_RECOVER = 2


async def ensure_default_rules(db: Database) -> int:
    """Give every live service with a public URL the default rules it lacks; returns how many
    were created."""
    created = 0
    async with db.session() as session:
        rows = (
            await session.execute(
                sa.select(Service, Environment.name)
                .join(Environment, Environment.id == Service.environment_id)
                .where(Service.deleted_at.is_(None), Service.public_url.is_not(None))
            )
        ).all()
        have = set(
            (
                await session.execute(
                    sa.select(MetricAlertRule.service_id, MetricAlertRule.name).where(
                        MetricAlertRule.is_default.is_(True)
                    )
                )
            ).all()
        )
        for svc, env_name in rows:
            for rule in DEFAULT_RULES:
                if (svc.id, rule.name) in have:
                    continue
                session.add(
                    MetricAlertRule(
                        name=rule.name,
                        service_id=svc.id,
                        environment_id=svc.environment_id,
                        metric=rule.metric,
                        tags={"environment": env_name, "service": svc.name},
                        expression=rule.expression,
                        per_metric=rule.per_metric,
                        window_seconds=DEFAULT_WINDOW,
                        comparator=">",
                        warning=rule.warning,
                        critical=rule.critical,
                        for_m=DEFAULT_FOR[0],
                        for_n=DEFAULT_FOR[1],
                        recover_n=DEFAULT_RECOVER,
                        is_default=True,
                        history=[],
                        status="healthy",
                    )
                )
                created += 1
    return created


async def rule_value(session: AsyncSession, rule: MetricAlertRule, now: datetime) -> float | None:
    """The rule's expression over its window (None: no data)."""
    window = timedelta(seconds=rule.window_seconds)
    found = await matching_series(session, rule.metric, rule.tags, None)
    if rule.expression == "ratio":
        if not rule.per_metric:
            return None
        per = await matching_series(session, rule.per_metric, rule.tags, None)
        (top,) = await run_query(session, found, window=window, stats=["increase"], now=now)
        (bottom,) = await run_query(session, per, window=window, stats=["increase"], now=now)
        if not bottom.value or not per:
            return None
        return 100.0 * (top.value or 0.0) / bottom.value
    if not found:
        return None
    (group,) = await run_query(session, found, window=window, stats=[rule.expression], now=now)
    return group.value


Notify = Callable[[dict[str, Any]], Awaitable[Any]]


async def evaluate(
    db: Database, now: datetime, notify: Notify, *, reminder_every: timedelta
) -> dict[str, int]:
    """Evaluate every active rule once; open, change and close incidents; send the messages
    (after the commit). Returns counts of what happened."""
    messages: list[dict[str, Any]] = []
    figures = {"rules": 0, "opened": 0, "recovered": 0, "reminders": 0}
    async with db.session() as session:
        # A stopped or deleted service has no data on purpose: its rules wait (`nodata` would
        # open an incident, or keep one open with reminders, that never recovers).
        resting = sa.select(Service.id).where(
            sa.or_(Service.status == "stopped", Service.deleted_at.is_not(None))
        )
        rules = (
            await session.scalars(
                sa.select(MetricAlertRule).where(
                    MetricAlertRule.is_active.is_(True),
                    sa.or_(
                        MetricAlertRule.service_id.is_(None),
                        MetricAlertRule.service_id.not_in(resting),
                    ),
                )
            )
        ).all()
        names = {
            row[0]: row[1] for row in await session.execute(sa.select(Service.id, Service.name))
        }
        for rule in rules:
            figures["rules"] += 1
            value = await rule_value(session, rule, now)
            level = level_of(value, rule.comparator, rule.warning, rule.critical)  # type: ignore[arg-type]
            history = keep_history(rule.history or [], level, max(rule.for_n, rule.recover_n))
            status = next_status(
                rule.status,  # type: ignore[arg-type]
                history,
                for_m=rule.for_m,
                for_n=rule.for_n,
                recover_n=rule.recover_n,
            )
            rule.history, rule.last_value, rule.evaluated_at = history, value, now
            rule.status = status
            incident = await session.scalar(
                sa.select(MetricIncident).where(
                    MetricIncident.rule_id == rule.id, MetricIncident.ended_at.is_(None)
                )
            )
            open_status = AS_HEALTH[incident.status] if incident else None
            action = incident_action(AS_HEALTH[status], open_status)
            who = names.get(rule.service_id, "") if rule.service_id else ""
            subject = f"{who}: " if who else ""
            shown = "no data" if value is None else f"{value:.4g}"
            cause = (
                f"{rule.name}: {rule.expression}({rule.metric}) over "
                f"{rule.window_seconds}s = {shown}"
            )
            if action == "open":
                incident = MetricIncident(
                    rule_id=rule.id,
                    service_id=rule.service_id,
                    started_at=now,
                    status=status,
                    cause=cause,
                    notified_at=now,
                )
                session.add(incident)
                await session.flush()
                figures["opened"] += 1
            elif incident is not None and action in ("escalate", "ease"):
                incident.status = status
            elif incident is not None and action == "recover":
                incident.ended_at = now
                incident.recovery_notified_at = now
                figures["recovered"] += 1
            if action in NOTIFIES and incident is not None:
                event = "incident" if action == "open" else "recovery"
                text = (
                    f"{subject}alert rule {rule.name} is {status}: {cause}"
                    if action == "open"
                    else f"{subject}alert rule {rule.name} recovered ({cause})"
                )
                messages.append(
                    {
                        "event": event,
                        "rule": rule.name,
                        "service": who,
                        "status": status,
                        "value": value,
                        "incident": str(incident.id),
                        "text": text,
                    }
                )
            elif incident is not None and incident.ended_at is None and incident.notified_at:
                due = reminder_due(incident.notified_at, now, reminder_every, incident.reminders)
                if due is not None:
                    incident.reminders = due
                    figures["reminders"] += 1
                    messages.append(
                        {
                            "event": "reminder",
                            "rule": rule.name,
                            "service": who,
                            "status": incident.status,
                            "incident": str(incident.id),
                            "text": f"{subject}alert rule {rule.name} still {incident.status}: "
                            f"{cause}",
                        }
                    )
        await refresh_series_status(session)
    for message in messages:
        await notify(message)
    return figures


async def service_stopped(
    session: AsyncSession, service_id: uuid.UUID, now: datetime, *, reason: str
) -> None:
    """A service was stopped on purpose: its open metric incidents end (no recovery message:
    it did not recover) and its rules start afresh when it starts again."""
    incidents = await session.scalars(
        sa.select(MetricIncident)
        .where(MetricIncident.service_id == service_id, MetricIncident.ended_at.is_(None))
        .with_for_update()
    )
    for incident in incidents:
        incident.ended_at = now
        incident.cause = f"{incident.cause} (ended: {reason})"
    await session.execute(
        sa.update(MetricAlertRule)
        .where(MetricAlertRule.service_id == service_id)
        .values(status="healthy", history=[])
        .execution_options(synchronize_session=False)
    )


async def refresh_series_status(session: AsyncSession) -> int:
    """Latest value and status of every series that has thresholds; returns how many."""
    series = (
        await session.scalars(
            sa.select(MetricSeries).where(
                sa.or_(
                    MetricSeries.threshold_warning.is_not(None),
                    MetricSeries.threshold_critical.is_not(None),
                    MetricSeries.threshold.is_not(None),
                )
            )
        )
    ).all()
    for s in series:
        latest = (
            await session.execute(
                sa.select(metric_samples.c.ts, metric_samples.c.value)
                .where(metric_samples.c.series_id == s.id)
                .order_by(metric_samples.c.ts.desc())
                .limit(1)
            )
        ).first()
        if latest is None:
            continue
        s.last_value = latest[1]
        s.last_at = datetime.fromtimestamp(latest[0] / 1000, UTC)
        warning = s.threshold_warning if s.threshold_warning is not None else s.threshold
        s.status = threshold_status(latest[1], warning, s.threshold_critical)
    return len(series)
