"""The supervisor's read of recent health checks for liveness, on both stores: the newest N
since each replica (re)started and settled, newest first, in one ranked query."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pilothouse.access import Principal
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.deployments.models import Deployment
from pilothouse.deployments.supervisor import LIVENESS_SETTLE, _liveness_candidates, _recent_checks
from pilothouse.environments.models import Environment
from pilothouse.healthchecks.models import HealthCheck
from pilothouse.replicas.lifecycle import CheckResult, liveness_failure
from pilothouse.replicas.models import Replica
from pilothouse.services.models import Service

pytestmark = pytest.mark.asyncio


async def test_recent_checks_are_the_newest_since_the_replica_settled(
    db: Database, admin: Principal
) -> None:
    now = utcnow()
    async with db.session() as session:
        env = Environment(owner_id=admin.id, name="dev", type="development")
        session.add(env)
        await session.flush()
        svc = Service(
            owner_id=admin.id,
            environment_id=env.id,
            name="web",
            health_check={"replica_interval": 1.0},
        )
        session.add(svc)
        await session.flush()
        fresh = Replica(service_id=svc.id, status="running", started_at=now - timedelta(seconds=8))
        old = Replica(service_id=svc.id, status="running", started_at=now - timedelta(days=1))
        quiet = Replica(service_id=svc.id, status="running", started_at=now - timedelta(hours=1))
        session.add_all([fresh, old, quiet])
        await session.flush()

        def check(replica: Replica, seconds_ago: float, ok: bool, code: int) -> HealthCheck:
            return HealthCheck(
                service_id=svc.id,
                replica_id=replica.id,
                target=f"replica:{replica.id}",
                kind="http",
                timestamp=now - timedelta(seconds=seconds_ago),
                ok=ok,
                overall_status="healthy" if ok else "unhealthy",
                http_status=code,
                detail=f"HTTP {code}",
            )

        # fresh: two failures inside its settle time (an old port), then one newer failure.
        settle_edge = 8 - LIVENESS_SETTLE
        session.add_all(
            [
                check(fresh, 7.5, False, 502),
                check(fresh, 6.0, False, 502),
                check(fresh, settle_edge - 0.5, False, 503),
            ]
        )
        # old: passes long ago (outside the look-back), then three failures, newest first 503.
        session.add_all(
            [
                check(old, 3600, True, 200),
                check(old, 3.0, False, 500),
                check(old, 2.0, False, 500),
                check(old, 1.0, False, 503),
                check(old, 0.5, True, 200),
            ]
        )
        rows = [(fresh, svc, env), (old, svc, env), (quiet, svc, env)]
        found = await _recent_checks(session, rows, {fresh.id: 3, old.id: 3, quiet.id: 3})

    assert found[fresh.id] == [CheckResult(False, 503, "HTTP 503")]
    assert liveness_failure(found[fresh.id], 3) is None  # the old port's failures do not count
    assert [c.http_status for c in found[old.id]] == [200, 503, 500]
    assert liveness_failure(found[old.id], 3) is None  # it recovered
    assert quiet.id not in found
    assert liveness_failure(found[old.id][1:], 2) == "liveness: 2 failed checks: HTTP 503"


async def test_liveness_skips_stopped_services_and_those_mid_deployment(
    db: Database, admin: Principal
) -> None:
    """Between `service stop` and the engine carrying it out, and during a deployment (a long
    `rollback --with-data` restore), failing checks must not get replicas killed."""
    now = utcnow()
    async with db.session() as session:
        env = Environment(owner_id=admin.id, name="dev", type="development")
        session.add(env)
        await session.flush()
        names = ("live", "stopped", "rolling-back")
        svcs = {n: Service(owner_id=admin.id, environment_id=env.id, name=n) for n in names}
        svcs["stopped"].status = "stopped"
        session.add_all(svcs.values())
        await session.flush()
        session.add(
            Deployment(
                owner_id=admin.id,
                service_id=svcs["rolling-back"].id,
                environment_id=env.id,
                version="v1",
                operator="admin",
                event_type="rollback",
                status="deploying",
            )
        )
        session.add_all(
            Replica(service_id=s.id, status="running", keep_running=True, started_at=now)
            for s in svcs.values()
        )
    async with db.session(write=False) as session:
        rows = await _liveness_candidates(session)
    assert [s.name for _, s, _ in rows] == ["live"]
