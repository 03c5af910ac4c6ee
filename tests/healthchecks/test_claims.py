"""Each probe runs once per slot, however many workers share the database."""

from __future__ import annotations

import asyncio

from pilothouse.core.db import Database
from pilothouse.healthchecks.monitor import Monitor, MonitorSettings, offset


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
