"""A stopped service in the health capability (issue 13.6), on both stores: the monitor drops
what probes in flight saw, the stop ends its incident and resets its health, `health` reads
`stopped`, and stopped time is not downtime in the uptime report."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from pilothouse.access import Principal
from pilothouse.artifacts import service as artifacts
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.probes import ProbeResult
from pilothouse.deployments.models import Deployment
from pilothouse.environments import service as environments
from pilothouse.errors import Conflict, Forbidden
from pilothouse.healthchecks import service as health
from pilothouse.healthchecks.models import HealthCheck, HealthState, Incident
from pilothouse.healthchecks.monitor import Monitor
from pilothouse.history import service as history
from pilothouse.services import lifecycle
from pilothouse.services import service as services


async def _running_service(db: Database, admin: Principal) -> uuid.UUID:
    """A running service with a live release v1 and a public URL nobody answers on."""
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e")
        svc = await services.create_service(
            session,
            admin,
            environment="e",
            name="web",
            resources={},
            public_url="http://127.0.0.1:9/",
            health_check={"interval": 1},
        )
        await services.transition(session, svc, "scheduled", actor=admin)
        await services.transition(session, svc, "running", actor=admin)
        artifact = await artifacts.register_artifact(
            session, admin, service=str(svc.id), version="v1", commit_sha="a" * 40
        )
        await artifacts.mark_deployed(session, artifact)
        return svc.id


async def _count(db: Database, model: type[object], service_id: uuid.UUID) -> int:
    async with db.session(write=False) as session:
        column = model.service_id  # type: ignore[attr-defined]
        found = await session.scalar(
            sa.select(sa.func.count()).select_from(model).where(column == service_id)
        )
        return int(found or 0)


async def test_what_probes_in_flight_saw_is_dropped_once_stopped(
    db: Database, admin: Principal
) -> None:
    service_id = await _running_service(db, admin)
    monitor = Monitor(db)
    monitor.targets = await monitor.collect_targets()
    target = next(t for t in monitor.targets if t.key == f"url:{service_id}")
    refused = ProbeResult(ok=False, latency_ms=None, detail="connection refused")

    monitor.record(target, refused)
    await monitor.flush()
    stored = await _count(db, HealthCheck, service_id)
    assert stored == 2, "while running: the URL check and the service-level check"

    async with db.session() as session:
        await lifecycle.stop_service(session, admin, "web")
    monitor.record(target, refused)  # a probe that was in flight at the stop
    await monitor.flush()
    assert await _count(db, HealthCheck, service_id) == stored
    assert await _count(db, HealthState, service_id) == 0
    assert [t for t in await monitor.collect_targets() if service_id in t.service_ids] == []


async def test_stop_ends_the_incident_and_health_reads_stopped(
    db: Database, admin: Principal
) -> None:
    service_id = await _running_service(db, admin)
    async with db.session() as session:
        session.add(Incident(service_id=service_id, status="unhealthy", cause="HTTP 503"))
        session.add(
            HealthState(
                target=f"service:{service_id}",
                service_id=service_id,
                status="unhealthy",
                streak_status="unhealthy",
                streak=3,
            )
        )
    async with db.session() as session:
        svc, stop = await lifecycle.stop_service(session, admin, "web", reason="night")
        assert svc.status == "stopped" and stop.event_type == "stop" and stop.version == "v1"
    async with db.session(write=False) as session:
        incident = await session.scalar(sa.select(Incident))
        assert incident is not None and incident.ended_at is not None
        assert "service stopped by admin" in incident.cause
        view = await health.health_of(session, admin, "web")
    assert view.status == "stopped" and view.changed_at is not None
    assert "service start" in view.reasons[0]

    with pytest.raises(Conflict, match="active deployment"):  # the stop is still pending
        async with db.session() as session:
            await lifecycle.start_service(session, admin, "web")
    async with db.session() as session:
        with pytest.raises(Conflict, match="from 'stopped' to 'stopped'"):
            await lifecycle.stop_service(session, admin, "web")


async def test_stop_and_start_refusals(db: Database, admin: Principal) -> None:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e")
        await services.create_service(session, admin, environment="e", name="new", resources={})
    async with db.session() as session:
        with pytest.raises(Conflict, match="no live release") as refused:
            await lifecycle.stop_service(session, admin, "new")
    assert refused.value.detail == {"entity": "service", "from": "pending", "to": "stopped"}
    async with db.session() as session:
        with pytest.raises(Conflict, match="is pending, not stopped"):
            await lifecycle.start_service(session, admin, "new")
    async with db.session(write=False) as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Deployment)) == 0


async def test_stopped_time_is_not_downtime(db: Database, admin: Principal) -> None:
    """The last checks before the stop got no answer and the next answer came after the start:
    without the stop that is one outage; with it, only the time it was meant to be up counts."""
    now = utcnow()
    # Both failed checks in one minute (at :10 and :45): the per-minute 5xx rule stays out.
    t_stop = (now - timedelta(minutes=20)).replace(second=50, microsecond=0)
    t_start = t_stop + timedelta(minutes=10)
    if t_stop.month != now.month:
        pytest.skip("the timeline would cross into last month")
    service_id = await _running_service(db, admin)
    async with db.session() as session:
        for to, at in (("stopped", t_stop), ("scheduled", t_start)):
            row = history.record_change(session, "service", service_id, None, to, actor=admin)
            row.changed_at = at
        row = history.record_change(session, "service", service_id, None, "running", actor=admin)
        row.changed_at = t_start + timedelta(seconds=20)
        for at, ok in (
            (t_stop - timedelta(seconds=40), False),
            (t_stop - timedelta(seconds=5), False),
            (t_start + timedelta(seconds=30), True),
        ):
            session.add(
                HealthCheck(
                    service_id=service_id,
                    target=f"service:{service_id}",
                    kind="service",
                    timestamp=at,
                    ok=ok,
                    overall_status="healthy" if ok else "unhealthy",
                    response_time_ms=5.0 if ok else None,
                )
            )
    async with db.session(write=False) as session:
        report, _, _ = await health.uptime_of(session, admin, "web", now.strftime("%Y-%m"))
    # 40 s before the stop and 30 s after the start were down; the ten stopped minutes not.
    assert report.downtime_minutes == pytest.approx(70 / 60, abs=1e-3)
    assert report.stopped_minutes == pytest.approx(10, abs=1e-3)


async def test_stop_and_start_need_the_operator_role(db: Database, admin: Principal) -> None:
    await _running_service(db, admin)
    viewer = Principal(id=admin.id, name="viewer", role="viewer")  # sees it, may not act
    for act in (lifecycle.stop_service, lifecycle.start_service):
        async with db.session() as session:
            with pytest.raises(Forbidden, match="needs 'operator'"):
                await act(session, viewer, "web")
