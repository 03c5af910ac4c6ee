"""Migrations and store guarantees on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pilothouse import migrations
from pilothouse.access import Principal
from pilothouse.core.db import Database, make_sync_engine
from pilothouse.environments import service as environments
from pilothouse.errors import InvalidTransition
from pilothouse.models import Base
from pilothouse.services import service as services

TABLES = {
    "users",
    "deploy_hooks",
    "hook_deliveries",
    "api_tokens",
    "environments",
    "environment_grants",
    "services",
    "artifacts",
    "deployments",
    "deployment_logs",
    "deployment_pins",
    "nodes",
    "replicas",
    "status_history",
    "audit_log",
    "backup_targets",
    "backups",
    "job_slots",
    "env_vars",
    "env_var_versions",
    "var_requirements",
    # health monitoring (0003)
    "health_checks",
    "probe_claims",
    "health_rollups",
    "health_states",
    "downtime",
    "maintenance_windows",
    "incidents",
    "notification_channels",
    # metrics (0014)
    "metric_series",
    "metric_samples",
    "metric_rollups",
    "metric_rollup_progress",
    "metric_alert_rules",
    "metric_incidents",
    # replica figures scraped from /metrics (0015)
    "replica_figures",
    # certificates and domains (0019)
    "certificates",
    "domains",
    "acme_accounts",
    "acme_challenges",
    # autoscaling (0018; cohorts 0025)
    "scaling_cohorts",
    "scaling_policies",
    "scaling_events",
    # dashboard sessions and public status pages (0021)
    "web_sessions",
    "public_status_pages",
    # security findings (0020)
    "security_scans",
    "security_findings",
    "security_finding_sightings",
    "security_scan_schedules",
    "security_gate_overrides",
}


def _tables(url: str) -> set[str]:
    engine = make_sync_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_migrations_down_and_up_again(db_url: str) -> None:
    assert _tables(db_url) == TABLES
    assert migrations.current_revision(db_url) == migrations.head_revision()
    try:
        migrations.downgrade(db_url, "base")
        assert _tables(db_url) == set()
        assert migrations.current_revision(db_url) is None
    finally:
        migrations.upgrade(db_url)  # never leave the shared test database behind head
    assert _tables(db_url) == TABLES


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_sync_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


@pytest.mark.parametrize("table", ["status_history", "audit_log"])
async def test_history_and_audit_are_append_only(
    db: Database, admin: Principal, table: str
) -> None:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e", type="staging")
        await services.create_service(session, admin, environment="e", name="s", resources={})
    for statement in (f"UPDATE {table} SET actor = 'forged'", f"DELETE FROM {table}"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with db.session() as session:
                await session.execute(sa.text(statement))
    async with db.session(write=False) as session:
        count = await session.scalar(sa.text(f"SELECT count(*) FROM {table}"))
        assert count and count > 0


async def test_failure_half_way_leaves_nothing_behind(db: Database, admin: Principal) -> None:
    """A transaction that dies after writing the service leaves no service, history or audit."""
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e", type="staging")
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            svc = await services.create_service(
                session, admin, environment="e", name="s", resources={}
            )
            await services.transition(session, svc, "scheduled", actor=admin)
            raise RuntimeError("process killed here")
    async with db.session(write=False) as session:
        for table in ("services", "status_history"):
            assert await session.scalar(sa.text(f"SELECT count(*) FROM {table}")) == 0
        audited = await session.scalar(
            sa.text("SELECT count(*) FROM audit_log WHERE entity_type = 'service'")
        )
        assert audited == 0
    with pytest.raises(InvalidTransition):
        async with db.session() as session:
            svc = await services.create_service(
                session, admin, environment="e", name="s", resources={}
            )
            await services.transition(session, svc, "running", actor=admin)
    async with db.session(write=False) as session:
        assert await session.scalar(sa.text("SELECT count(*) FROM services")) == 0


async def test_timestamps_are_utc_aware_and_round_trip(db: Database, admin: Principal) -> None:
    async with db.session() as session:
        env = await environments.create_environment(session, admin, name="e")
        env_id = env.id
    async with db.session(write=False) as session:
        env = await environments.get_environment(session, admin, str(env_id))
        assert env.created_at.tzinfo is not None
        assert env.created_at.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - env.created_at) < timedelta(minutes=1)


def test_database_refuses_out_of_range_rows_and_two_deployed_artifacts(db_url: str) -> None:
    """The constraints hold even for writes that bypass the API."""
    engine = make_sync_engine(db_url)
    try:
        with engine.begin() as conn:
            uid, eid, sid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            now = datetime.now(UTC)
            users = Base.metadata.tables["users"]
            envs = Base.metadata.tables["environments"]
            svcs = Base.metadata.tables["services"]
            conn.execute(
                users.insert().values(
                    id=uid, name="u", role="admin", is_active=True, created_at=now, updated_at=now
                )
            )
            conn.execute(
                envs.insert().values(
                    id=eid,
                    owner_id=uid,
                    name="e",
                    type="staging",
                    driver="process",
                    config={},
                    features={},
                    limits={},
                    is_active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
            base = dict(
                owner_id=uid,
                environment_id=eid,
                target_replicas=1,
                cpu_cores=1.0,
                memory_mb=512,
                gpu_units=0,
                storage_gb=1,
                driver_config={},
                health_check={},
                status="pending",
                created_at=now,
                updated_at=now,
            )
            conn.execute(svcs.insert().values(id=sid, name="s", **base))
        for bad in (
            {"target_replicas": 101},
            {"cpu_cores": 0.25},
            {"memory_mb": 100},
            {"status": "zombie"},
        ):
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
                conn.execute(svcs.insert().values(id=uuid.uuid4(), name="t", **{**base, **bad}))
        arts = Base.metadata.tables["artifacts"]
        row = dict(owner_id=uid, service_id=sid, commit_sha="a" * 40, deployed=True, created_at=now)
        with engine.begin() as conn:
            conn.execute(arts.insert().values(id=uuid.uuid4(), version="v1", **row))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(arts.insert().values(id=uuid.uuid4(), version="v2", **row))
    finally:
        engine.dispose()


def test_upgrade_to_0002_keeps_one_active_deployment_per_service(db_url: str) -> None:
    """Before 0002 a service could hold several active deployments; the upgrade keeps the newest
    and fails the others, each with a status_history row, so the new unique index can exist."""
    from datetime import timedelta

    migrations.downgrade(db_url, "0001")
    engine = make_sync_engine(db_url)
    sqlite = db_url.startswith("sqlite")

    def ident(value: uuid.UUID) -> object:
        return value.hex if sqlite else value

    def stamp(value: datetime) -> object:
        return value.replace(tzinfo=None) if sqlite else value

    uid, eid, sid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    deps = [uuid.uuid4() for _ in range(3)]
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO users (id, name, role, is_active, created_at, updated_at) "
                    "VALUES (:id, 'u', 'admin', true, :now, :now)"
                ),
                {"id": ident(uid), "now": stamp(now)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO environments (id, owner_id, name, type, driver, config, features, "
                    "limits, is_active, created_at, updated_at) VALUES (:id, :uid, 'e', 'staging', "
                    "'process', '{}', '{}', '{}', true, :now, :now)"
                ),
                {"id": ident(eid), "uid": ident(uid), "now": stamp(now)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO services (id, owner_id, environment_id, name, target_replicas, "
                    "cpu_cores, memory_mb, gpu_units, storage_gb, driver_config, health_check, "
                    "status, created_at, updated_at) VALUES (:id, :uid, :eid, 's', 1, 1, 512, 0, "
                    "1, '{}', '{}', 'pending', :now, :now)"
                ),
                {"id": ident(sid), "uid": ident(uid), "eid": ident(eid), "now": stamp(now)},
            )
            for i, dep in enumerate(deps):
                conn.execute(
                    sa.text(
                        "INSERT INTO deployments (id, owner_id, service_id, environment_id, "
                        "version, status, event_type, triggered_by, operator, migration_applied, "
                        "backup_created, health_check_passed, instances_deployed, created_at, "
                        "updated_at) VALUES (:id, :uid, :sid, :eid, 'v1', :status, 'deploy', "
                        "'manual', 'u', false, false, false, 0, :at, :at)"
                    ),
                    {
                        "id": ident(dep),
                        "uid": ident(uid),
                        "sid": ident(sid),
                        "eid": ident(eid),
                        "status": "building" if i == 0 else "pending",
                        "at": stamp(now + timedelta(seconds=i)),
                    },
                )
        migrations.upgrade(db_url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, status, error_message FROM deployments ORDER BY created_at")
            ).all()
            history = conn.execute(
                sa.text("SELECT from_status, to_status, actor FROM status_history")
            ).all()
        assert [r[1] for r in rows] == ["failed", "failed", "pending"]
        assert all("superseded" in (r[2] or "") for r in rows[:2])
        assert sorted(history) == [
            ("building", "failed", "migration 0002"),
            ("pending", "failed", "migration 0002"),
        ]
    finally:
        engine.dispose()
