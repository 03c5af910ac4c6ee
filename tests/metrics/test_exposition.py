"""pilothouse on /metrics: its state rendered with prometheus_client and read back with
prometheus_client's parser; who may read it (allow-listed address or token)."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.access import Principal
from pilothouse.app import create_app
from pilothouse.backups.models import Backup, BackupTarget
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.deployments.models import Deployment
from pilothouse.environments import service as environments
from pilothouse.errors import Forbidden, Unauthorized
from pilothouse.healthchecks.models import HealthCheck, HealthState, Incident
from pilothouse.metrics.exposition import allowed, histogram, render, snapshot
from pilothouse.replicas.models import Replica
from pilothouse.services import service as services
from tests.conftest import one_store


def parsed(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> sorted labels -> value, with the family types checked on the way."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("pilothouse_"), family.name
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.mark.parametrize(
    ("durations", "expected_le", "expected_sum"),
    [
        ([], {"1.0": 0, "60.0": 0, "+Inf": 0}, 0.0),
        ([(12.0, 2), (200.0, 1)], {"10.0": 0, "30.0": 2, "300.0": 3, "+Inf": 3}, 224.0),
        ([(5000.0, 1)], {"3600.0": 0, "+Inf": 1}, 5000.0),
    ],
)
def test_histogram_is_cumulative(
    durations: list[tuple[float, int]], expected_le: dict[str, float], expected_sum: float
) -> None:
    buckets, total = histogram(durations)
    found = dict(buckets)
    for le, count in expected_le.items():
        assert found[le] == count
    assert total == expected_sum
    counts = [c for _le, c in buckets]
    assert counts == sorted(counts)


async def _state(db: Database, admin: Principal) -> uuid.UUID:
    now = utcnow()
    async with db.session() as session:
        env = await environments.create_environment(session, admin, name="prod")
        svc = await services.create_service(
            session, admin, environment="prod", name="web", resources={}
        )
        svc.status = "running"
        for status in ("running", "running", "stopped"):
            session.add(Replica(service_id=svc.id, status=status, ports={"http": 1}))
        common = {"owner_id": admin.id, "service_id": svc.id, "environment_id": env.id}
        for status, seconds in (
            ("success", 12),
            ("success", 40),
            ("failed", 200),
            ("pending", None),
        ):
            session.add(
                Deployment(
                    **common,
                    version="v1",
                    operator="admin",
                    status=status,
                    duration_seconds=seconds,
                    created_at=now - timedelta(seconds=90),
                )
            )
        # A deployment (of another service) whose worker died: its lease ran out 30 s ago.
        other = await services.create_service(
            session, admin, environment="prod", name="api", resources={}
        )
        session.add(
            Deployment(
                **{**common, "service_id": other.id},
                version="v2",
                operator="admin",
                status="deploying",
                lease_owner="gone",
                lease_expires_at=now - timedelta(seconds=30),
            )
        )
        session.add(
            HealthCheck(
                service_id=svc.id,
                environment_id=env.id,
                target=f"url:{svc.id}",
                kind="http",
                ok=True,
                overall_status="healthy",
                response_time_ms=25.0,
                timestamp=now,
            )
        )
        session.add(
            HealthState(
                target=f"service:{svc.id}",
                service_id=svc.id,
                status="degraded",
                streak_status="degraded",
                streak=1,
            )
        )
        session.add(Incident(service_id=svc.id, status="degraded", cause="slow"))
        target = BackupTarget(
            name="maindb",
            engine="postgresql",
            database_name="app",
            dsn_encrypted="x",
            dsn_display="postgresql://app@db/app",
            schedule=None,
            drill_schedule=None,
        )
        session.add(target)
        await session.flush()
        for status, done, size in (
            ("completed", now - timedelta(hours=2), 4096),
            ("failed", None, None),
        ):
            session.add(
                Backup(
                    target_id=target.id,
                    name=f"backup_{status}",
                    backup_type="full",
                    environment="prod",
                    status=status,
                    triggered_by="scheduled",
                    completed_at=done,
                    duration_seconds=7 if done else None,
                    size_bytes=size,
                    engine="postgresql",
                    database_name="app",
                    object_key="k",
                    storage_location="/x",
                    storage_url="file:///x",
                    retention_expires_at=now + timedelta(days=7),
                )
            )
        return svc.id


async def test_state_is_exposed_with_prometheus_names(db: Database, admin: Principal) -> None:
    service_id = await _state(db, admin)
    found = parsed(render(await snapshot(db)).decode())
    assert found["pilothouse_deployments"][(("status", "success"),)] == 2
    assert found["pilothouse_deployments"][(("status", "rolled_back"),)] == 0
    assert found["pilothouse_rollout_duration_seconds_count"][()] == 3
    assert found["pilothouse_rollout_duration_seconds_sum"][()] == 252
    assert found["pilothouse_rollout_duration_seconds_bucket"][(("le", "30.0"),)] == 1
    assert found["pilothouse_rollout_duration_seconds_bucket"][(("le", "+Inf"),)] == 3
    replicas = found["pilothouse_replicas"]
    assert replicas[(("environment", "prod"), ("service", "web"), ("status", "running"))] == 2
    assert replicas[(("environment", "prod"), ("service", "web"), ("status", "stopped"))] == 1
    probe = (("kind", "http"), ("service", "web"), ("target", f"url:{service_id}"))
    assert found["pilothouse_probe_success"][probe] == 1
    assert found["pilothouse_probe_duration_seconds"][probe] == pytest.approx(0.025)
    assert found["pilothouse_service_health"][(("service", "web"), ("status", "degraded"))] == 1
    assert found["pilothouse_service_health"][(("service", "web"), ("status", "healthy"))] == 0
    assert found["pilothouse_incidents_open"][(("service", "web"),)] == 1
    assert (("service", "api"),) not in found["pilothouse_incidents_open"]  # not running
    target = (("target", "maindb"),)
    assert found["pilothouse_backup_age_seconds"][target] == pytest.approx(7200, abs=60)
    assert found["pilothouse_backup_size_bytes"][target] == 4096
    assert found["pilothouse_backup_duration_seconds"][target] == 7
    assert found["pilothouse_backup_last_success_timestamp_seconds"][target] > 1.7e9
    assert found["pilothouse_backups"][(("status", "failed"), ("target", "maindb"))] == 1
    assert found["pilothouse_queue_length"][(("queue", "deployments"),)] == 1
    assert found["pilothouse_queue_oldest_age_seconds"][(("queue", "deployments"),)] >= 90
    assert found["pilothouse_leases_expired"][(("kind", "deployment"),)] == 1
    assert found["pilothouse_lease_overdue_seconds"][(("kind", "deployment"),)] >= 30
    assert found["pilothouse_leases_expired"][(("kind", "backup"),)] == 0


def net(*cidrs: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c) for c in cidrs]


@pytest.mark.parametrize(
    ("token", "allow", "client", "authorization", "outcome"),
    [
        (None, ["127.0.0.1/32"], "127.0.0.1", None, None),
        (None, ["10.0.0.0/8"], "10.1.2.3", None, None),
        (None, ["127.0.0.1/32"], "192.0.2.7", None, Forbidden),
        (None, ["127.0.0.1/32"], "testclient", None, Forbidden),  # not an address
        (None, [], "127.0.0.1", None, Forbidden),
        ("s3cret", [], "192.0.2.7", "Bearer s3cret", None),
        ("s3cret", [], "192.0.2.7", "bearer s3cret", None),
        ("s3cret", [], "192.0.2.7", "Bearer wrong", Unauthorized),
        ("s3cret", [], "192.0.2.7", None, Unauthorized),
        ("s3cret", [], "192.0.2.7", "Basic s3cret", Unauthorized),
        ("s3cret", ["192.0.2.0/24"], "192.0.2.7", None, None),  # allow-listed: no token needed
        (None, ["::1/128"], "::1", None, None),
    ],
)
def test_who_may_read(
    token: str | None,
    allow: list[str],
    client: str,
    authorization: str | None,
    outcome: type[Exception] | None,
) -> None:
    settings = Settings(metrics_token=token, metrics_allow=net(*allow))
    if outcome is None:
        allowed(settings, client, authorization)
    else:
        with pytest.raises(outcome) as caught:
            allowed(settings, client, authorization)
        assert "s3cret" not in str(caught.value)


@one_store
def test_metrics_route_over_http(settings: Settings, admin_token: str) -> None:
    settings.metrics_token = "scrape-token"
    with TestClient(create_app(settings, migrate=False)) as client:  # client address: testclient
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert "scrape-token" not in refused.text
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("text/plain")
        names = {f.name for f in text_string_to_metric_families(ok.text)}
        assert {"pilothouse_deployments", "pilothouse_rollout_duration_seconds"} <= names
