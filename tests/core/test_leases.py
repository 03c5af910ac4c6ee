"""core/leases.py on both stores: row leases (claim, renew, expiry, reclaim) and slot claims."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from pilothouse.access import Principal
from pilothouse.artifacts import service as artifacts
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.leases import JobSlot, Leases, slot_start
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import Deployment
from pilothouse.environments import service as environments
from pilothouse.services import service as services
from pilothouse.users import service as users

SHA = "a" * 40


async def _deployment(db: Database) -> uuid.UUID:
    async with db.session() as session:
        user, _ = await users.bootstrap_admin(session, "a")
        admin = Principal(user.id, "a", "admin")
        await environments.create_environment(session, admin, name="e")
        svc = await services.create_service(session, admin, environment="e", name="s", resources={})
        await artifacts.register_artifact(
            session, admin, service=str(svc.id), version="v1", commit_sha=SHA
        )
        dep = await deployments.create_deployment(session, admin, service="s", version="v1")
        return dep.id


def test_row_lease_one_holder_renewal_expiry_and_takeover(db_url: str) -> None:
    async def scenario() -> None:
        db = Database(db_url)
        try:
            dep_id = await _deployment(db)
            pending = Deployment.status == "pending"
            workers = [Leases(db, owner=f"w{i}", seconds=0.5) for i in range(3)]
            won = await asyncio.gather(*(w.claim(Deployment, dep_id, pending) for w in workers))
            assert sorted(won) == [False, False, True]
            holder = workers[won.index(True)]
            others = [w for w in workers if w is not holder]
            assert await holder.renew(Deployment, dep_id)
            assert not await others[0].renew(Deployment, dep_id)
            # While the holder renews (heartbeat), nobody takes it over.
            async with holder.held(Deployment, dep_id):
                await asyncio.sleep(1.0)
                assert await others[0].expired(Deployment) == []
                assert not await others[0].reclaim(Deployment, dep_id)
            # The holder stops renewing (it died): after the lease, one other worker takes over.
            await asyncio.sleep(0.7)
            assert await others[0].expired(Deployment, pending) == [dep_id]
            took = await asyncio.gather(*(w.reclaim(Deployment, dep_id) for w in others))
            assert sorted(took) == [False, True]
            async with db.session(write=False) as session:
                row = await session.get(Deployment, dep_id)
                assert row is not None
                assert row.lease_owner == others[took.index(True)].owner
            # A claim that does not accept expired leases leaves a lapsed one alone.
            await asyncio.sleep(0.7)
            assert not await holder.claim(Deployment, dep_id, pending, expired_ok=False)
            assert await holder.claim(Deployment, dep_id, pending)
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_slot_claims_have_one_winner_and_are_pruned(db_url: str) -> None:
    async def scenario() -> None:
        db = Database(db_url)
        try:
            workers = [Leases(db, owner=f"w{i}") for i in range(3)]
            now = utcnow()
            slots = [
                slot_start(now, timedelta(seconds=30)) - timedelta(seconds=30 * i) for i in range(4)
            ]
            for slot in slots:
                won = await asyncio.gather(*(w.claim_slot("job", "all", slot) for w in workers))
                assert sorted(won) == [False, False, True]
            assert await workers[0].claimed("job", slots[0]) == {"all"}
            old = now - timedelta(days=40)
            assert await workers[1].claim_slot("job", "all", old)
            assert await workers[2].prune_slots(now - timedelta(days=35)) == 1
            async with db.session(write=False) as session:
                left = await session.scalar(sa.select(sa.func.count()).select_from(JobSlot))
            assert left == len(slots)
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_slots_start_at_the_epoch_so_every_worker_agrees() -> None:
    at = datetime(2026, 12, 1, 10, 0, 47, 500000, tzinfo=UTC)
    assert slot_start(at, timedelta(seconds=30)) == datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
    assert slot_start(at, timedelta(hours=1)) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert slot_start(at, timedelta(seconds=1)) == datetime(2026, 12, 1, 10, 0, 47, tzinfo=UTC)
