"""Alert rules end to end on the store: default rules for services with a public URL, a burst
of errors opens an incident named after the rule (one message), recovery closes it (one more)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pilothouse.access import Principal
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.healthchecks import service as health
from pilothouse.metrics import alerting
from pilothouse.metrics.models import MetricAlertRule, MetricIncident, MetricSeries
from pilothouse.metrics.samples import Sample, write_samples
from pilothouse.services import service as services
from pilothouse.services.models import Service

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RESOURCES: dict[str, Any] = {}


async def _world(db: Database, admin: Principal) -> None:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="prod", type="production")
        await services.create_service(
            session,
            admin,
            environment="prod",
            name="web",
            resources=RESOURCES,
            command="run {port}",
            public_url="https://web.example.test",
        )
        await services.create_service(
            session,
            admin,
            environment="prod",
            name="worker",
            resources=RESOURCES,
            command="run {port}",
        )


async def _traffic(db: Database, start: datetime, minutes: int, error_every: int) -> None:
    """One request per second; an error every `error_every` requests (0: none); latency 100 ms."""
    tags = {"environment": "prod", "service": "web"}
    batch = []
    for second in range(minutes * 60):
        at = start + timedelta(seconds=second)
        n = (second + 1) + (minutes and 0)
        errors = (second + 1) // error_every if error_every else 0
        batch.append(Sample(alerting.REQUESTS, tags, float(n), at))
        batch.append(Sample(alerting.ERRORS, tags, float(errors), at))
        batch.append(Sample(alerting.RESPONSE_TIME, tags, 100.0, at, unit="ms"))
    await write_samples(db, batch)


async def test_defaults_are_created_once_for_public_services(
    db: Database, admin: Principal
) -> None:
    await _world(db, admin)
    assert await alerting.ensure_default_rules(db) == 3
    assert await alerting.ensure_default_rules(db) == 0
    async with db.session(write=False) as session:
        rules = (await session.scalars(sa.select(MetricAlertRule))).all()
    assert sorted(r.name for r in rules) == ["error-rate", "response-time-avg", "response-time-p95"]
    assert {r.tags["service"] for r in rules} == {"web"}


async def test_error_burst_opens_an_incident_and_recovery_closes_it(
    db: Database, admin: Principal
) -> None:
    await _world(db, admin)
    await alerting.ensure_default_rules(db)
    sent: list[dict[str, Any]] = []

    async def notify(message: dict[str, Any]) -> None:
        sent.append(message)

    async def tick(at: datetime) -> dict[str, int]:
        return await alerting.evaluate(db, at, notify, reminder_every=timedelta(minutes=30))

    # Healthy traffic: nothing happens.
    await _traffic(db, T0, 10, error_every=0)
    assert (await tick(T0 + timedelta(minutes=10)))["opened"] == 0
    # 10% errors for the next 10 minutes: 2 of 3 evaluations breach -> one incident, one message.
    await _traffic(db, T0 + timedelta(minutes=10), 10, error_every=10)
    opened = [await tick(T0 + timedelta(minutes=m)) for m in (16, 17, 18)]
    assert [o["opened"] for o in opened] == [0, 1, 0]
    assert [m["event"] for m in sent] == ["incident"]
    assert sent[0]["rule"] == "error-rate" and sent[0]["status"] == "critical"
    assert "web: alert rule error-rate is critical" in sent[0]["text"]
    # Clean traffic again: two clear evaluations recover it, one recovery message.
    await _traffic(db, T0 + timedelta(minutes=20), 10, error_every=0)
    recovered = [await tick(T0 + timedelta(minutes=m)) for m in (27, 28, 29)]
    assert [r["recovered"] for r in recovered] == [0, 1, 0]
    assert [m["event"] for m in sent] == ["incident", "recovery"]
    async with db.session(write=False) as session:
        incidents = (await session.scalars(sa.select(MetricIncident))).all()
        assert len(incidents) == 1 and incidents[0].ended_at is not None


async def test_a_stopped_service_ends_its_incident_and_is_not_evaluated(
    db: Database, admin: Principal
) -> None:
    """`service stop` ends the open metric incident (no recovery message: it did not recover);
    while stopped or deleted its rules are skipped: no `nodata` incident, no reminder."""
    await _world(db, admin)
    await alerting.ensure_default_rules(db)
    sent: list[dict[str, Any]] = []

    async def notify(message: dict[str, Any]) -> None:
        sent.append(message)

    async def tick(at: datetime) -> dict[str, int]:
        return await alerting.evaluate(db, at, notify, reminder_every=timedelta(minutes=30))

    await _traffic(db, T0, 10, error_every=10)
    assert [(await tick(T0 + timedelta(minutes=m)))["opened"] for m in (7, 8)] == [0, 1]
    async with db.session() as session:
        web = await session.scalar(sa.select(Service).where(Service.name == "web"))
        assert web is not None
        web.status = "stopped"
        await health.service_stopped(session, web.id, reason="service stopped by admin")
    async with db.session(write=False) as session:
        (incident,) = (await session.scalars(sa.select(MetricIncident))).all()
        assert incident.ended_at is not None and "service stopped by admin" in incident.cause
    # Hours later, no data: nothing opens, nothing is reminded.
    figures = [await tick(T0 + timedelta(hours=h)) for h in (1, 2, 3)]
    assert all(f == {"rules": 0, "opened": 0, "recovered": 0, "reminders": 0} for f in figures)
    assert [m["event"] for m in sent] == ["incident"]
    async with db.session() as session:
        web = await session.scalar(sa.select(Service).where(Service.name == "web"))
        assert web is not None
        web.status, web.deleted_at = "running", T0
    assert (await tick(T0 + timedelta(hours=4)))["rules"] == 0


async def test_series_status_follows_thresholds(db: Database, admin: Principal) -> None:
    await write_samples(db, [Sample("queue_depth", {}, 75.0, T0)])
    async with db.session() as session:
        await session.execute(
            sa.update(MetricSeries).values(threshold_warning=50.0, threshold_critical=100.0)
        )
        await alerting.refresh_series_status(session)
    async with db.session(write=False) as session:
        series = await session.scalar(sa.select(MetricSeries))
        assert series is not None
        assert (series.status, series.last_value) == ("warning", 75.0)
