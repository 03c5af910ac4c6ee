"""Each probe runs once per slot, however many workers share the database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.core.db import Database, make_sync_engine
from pilothouse.environments import service as environments
from pilothouse.healthchecks.models import HealthCheck
from pilothouse.healthchecks.monitor import Monitor, MonitorSettings, offset
from pilothouse.services import service as services
from pilothouse.users import service as users


async def test_one_claim_per_target_and_slot(db: Database) -> None:
    workers = [Monitor(db, MonitorSettings(worker=f"w{i}")) for i in range(3)]
    for slot in range(5):
        won = await asyncio.gather(*(w._claim("replica:x", slot) for w in workers))
        assert sorted(won) == [False, False, True]


def test_offsets_spread_targets_inside_the_interval() -> None:
    offsets = {offset(f"replica:{i}", 30) for i in range(200)}
    assert all(0 <= o < 30 for o in offsets)
    assert len(offsets) > 150  # spread, not bunched on one instant
    assert offset("a", 30) == offset("a", 30)  # stable across runs and workers


def test_sla_breach_is_reported_once_per_month_however_many_workers(db_url: str) -> None:
    import uuid
    from datetime import timedelta

    from pilothouse.access import Principal
    from pilothouse.core.clock import utcnow
    from pilothouse.core.leases import Leases
    from pilothouse.environments import service as environments
    from pilothouse.healthchecks import service as health
    from pilothouse.healthchecks.models import HealthCheck
    from pilothouse.services import service as services
    from pilothouse.users import service as users

    async def scenario() -> list[int]:
        db = Database(db_url)
        try:
            async with db.session() as session:
                user, _ = await users.bootstrap_admin(session, "a")
                admin = Principal(user.id, "a", "admin")
                await environments.create_environment(session, admin, name="e")
                svc = await services.create_service(
                    session, admin, environment="e", name="s", resources={}
                )
                svc.status = "running"
                now = utcnow()
                for minute in range(20):
                    session.add(
                        HealthCheck(
                            id=uuid.uuid4(),
                            service_id=svc.id,
                            target=f"service:{svc.id}",
                            kind="service",
                            timestamp=now - timedelta(minutes=20 - minute),
                            ok=False,
                            overall_status="unhealthy",
                        )
                    )
            workers = [Leases(db, owner=f"w{i}") for i in range(3)]
            found = []
            for _ in range(2):  # two passes: the month's alert is never repeated
                results = await asyncio.gather(
                    *(health.sla_breaches(db, utcnow(), w) for w in workers)
                )
                found.append(sum(len(r) for r in results))
            return found
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == [1, 0]


def test_sla_markers_from_before_the_lease_kit_survive_the_upgrade(
    db_url: str, tmp_path: Path
) -> None:
    """A service alerted this month under the old marker row (health_states `sla:<id>:<month>`,
    revision 0007) is not alerted again after the upgrade moves the marker into job_slots; a
    breaching service without a marker still is (the receiver does hear alerts)."""
    from pilothouse import migrations
    from pilothouse.alerts import service as alerts
    from pilothouse.alerts.models import NotificationChannel
    from pilothouse.config import Settings
    from pilothouse.core.clock import utcnow
    from pilothouse.core.leases import Leases
    from pilothouse.core.loops import Runtime
    from pilothouse.healthchecks.loops import HealthLoops
    from pilothouse.healthchecks.models import HealthState
    from tests.alerts.test_channels import Receiver

    receiver = Receiver(204)
    now = utcnow()
    service_ids: list[uuid.UUID] = []

    async def before_the_upgrade() -> None:
        db = Database(db_url)
        try:
            # users, services and channels are written at head (today's models hold columns
            # revision 0007 lacks); the downgrade keeps the rows
            async with db.session() as session:
                user, _ = await users.bootstrap_admin(session, "a")
                admin = Principal(user.id, "a", "admin")
                await environments.create_environment(session, admin, name="e")
                for name in ("alerted", "fresh"):
                    svc = await services.create_service(
                        session, admin, environment="e", name=name, resources={}
                    )
                    svc.status = "running"
                    service_ids.append(svc.id)
                session.add(
                    NotificationChannel(
                        owner_id=user.id, name="hook", kind="webhook", config={"url": receiver.url}
                    )
                )
        finally:
            await db.dispose()
        migrations.downgrade(db_url, "0007")
        db = Database(db_url)
        try:
            async with db.session() as session:
                for service_id in service_ids:
                    _failing_checks(session, service_id, now)
                # what the SLA check wrote before the lease kit, earlier this month
                session.add(
                    HealthState(
                        target=f"sla:{service_ids[0]}:{now:%Y-%m}",
                        service_id=service_ids[0],
                        status="unhealthy",
                        streak_status="unhealthy",
                        streak=1,
                        reasons=["sla"],
                    )
                )
        finally:
            await db.dispose()

    async def scenario() -> int | None:
        await before_the_upgrade()
        migrations.upgrade(db_url)
        db = Database(db_url)
        try:
            settings = Settings(data_dir=tmp_path / "data", database_url=db_url, role="worker")
            runtime = Runtime(db, settings, Leases(db, owner="w"))
            await HealthLoops(runtime).check_sla()
            await alerts.settle()
            async with db.session(write=False) as session:
                return await session.scalar(
                    sa.select(sa.func.count()).where(HealthState.target.like("sla:%"))
                )
        finally:
            await db.dispose()

    try:
        markers = asyncio.run(scenario())
    finally:
        receiver.close()
        migrations.upgrade(db_url)  # never leave the shared test database behind head
    assert [(b["event"], b["service"]) for b in receiver.bodies] == [("sla", "fresh")]
    assert markers == 0  # the old rows are gone
    # downgrading writes the month's claims back as markers, for the code that reads them
    migrations.downgrade(db_url, "0007")
    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            targets = conn.execute(
                sa.text("SELECT target FROM health_states WHERE target LIKE 'sla:%'")
            ).scalars()
            assert sorted(targets) == sorted(f"sla:{i}:{now:%Y-%m}" for i in service_ids)
    finally:
        engine.dispose()
    migrations.upgrade(db_url)


def _failing_checks(session: AsyncSession, service_id: uuid.UUID, now: datetime) -> None:
    """Twenty failed minutes just before `now`: far below any SLA target."""
    for minute in range(20):
        session.add(
            HealthCheck(
                id=uuid.uuid4(),
                service_id=service_id,
                target=f"service:{service_id}",
                kind="service",
                timestamp=now - timedelta(minutes=20 - minute),
                ok=False,
                overall_status="unhealthy",
            )
        )
