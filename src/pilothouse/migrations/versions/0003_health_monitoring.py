"""health monitoring

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 14:37:19.522208
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OLD_KINDS = ("deployment", "service", "replica")
NEW_KINDS = (*OLD_KINDS, "service_health", "replica_health")
GUARDED = ("status_history", "audit_log")


def _kinds_check(kinds: tuple[str, ...]) -> str:
    return "entity_type IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _set_entity_kinds(kinds: tuple[str, ...]) -> None:
    """status_history.entity_type gains (or loses) the health kinds.

    On SQLite the table is rebuilt, which drops its append-only triggers: they are re-created."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS status_history_no_{verb}")
        with op.batch_alter_table("status_history", recreate="always") as batch_op:
            batch_op.drop_constraint(op.f("ck_status_history_entity_kind"), type_="check")
            batch_op.create_check_constraint("entity_kind", _kinds_check(kinds))
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER status_history_no_{verb.lower()} BEFORE {verb} ON status_history "
                "BEGIN SELECT RAISE(ABORT, 'status_history is append-only'); END"
            )
        return
    op.drop_constraint(op.f("ck_status_history_entity_kind"), "status_history", type_="check")
    op.create_check_constraint("entity_kind", "status_history", _kinds_check(kinds))


def upgrade() -> None:
    _set_entity_kinds(NEW_KINDS)
    op.create_table(
        "health_rollups",
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("healthy", sa.Integer(), nullable=False),
        sa.Column("degraded", sa.Integer(), nullable=False),
        sa.Column("unhealthy", sa.Integer(), nullable=False),
        sa.Column("avg_ms", sa.Float(), nullable=True),
        sa.Column("p95_ms", sa.Float(), nullable=True),
        sa.Column("max_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("target", "hour", name=op.f("pk_health_rollups")),
    )
    with op.batch_alter_table("health_rollups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_health_rollups_service_id"), ["service_id"], unique=False
        )

    op.create_table(
        "health_states",
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "healthy",
                "degraded",
                "unhealthy",
                name="health_state_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("streak_status", sa.String(length=20), nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.Column(
            "reasons",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_health_states")),
    )
    with op.batch_alter_table("health_states", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_health_states_service_id"), ["service_id"], unique=False
        )

    op.create_table(
        "probe_claims",
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("worker", sa.String(length=100), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", "slot", name=op.f("pk_probe_claims")),
    )
    with op.batch_alter_table("probe_claims", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_probe_claims_claimed_at"), ["claimed_at"], unique=False
        )

    op.create_table(
        "notification_channels",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "webhook",
                "slack",
                "email",
                name="channel_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_notification_channels_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_channels")),
        sa.UniqueConstraint("name", name="uq_notification_channels_name"),
    )
    op.create_table(
        "downtime",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cause", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_downtime_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_downtime")),
    )
    with op.batch_alter_table("downtime", schema=None) as batch_op:
        batch_op.create_index(
            "ix_downtime_service_start", ["service_id", "started_at"], unique=False
        )

    op.create_table(
        "health_checks",
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("replica_id", sa.Uuid(), nullable=True),
        sa.Column("environment_id", sa.Uuid(), nullable=True),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("instance_id", sa.String(length=200), nullable=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column(
            "overall_status",
            sa.Enum(
                "healthy",
                "degraded",
                "unhealthy",
                name="health_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("response_time_ms", sa.Float(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("database_status", sa.String(length=20), nullable=True),
        sa.Column("database_response_ms", sa.Float(), nullable=True),
        sa.Column("redis_status", sa.String(length=20), nullable=True),
        sa.Column("redis_response_ms", sa.Float(), nullable=True),
        sa.Column("memory_usage_mb", sa.Float(), nullable=True),
        sa.Column("memory_usage_percent", sa.Float(), nullable=True),
        sa.Column("cpu_usage_percent", sa.Float(), nullable=True),
        sa.Column("uptime_seconds", sa.Integer(), nullable=True),
        sa.Column("version", sa.String(length=100), nullable=True),
        sa.Column("total_requests", sa.Integer(), nullable=True),
        sa.Column("active_connections", sa.Integer(), nullable=True),
        sa.Column("error_rate_5min", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_health_checks_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_health_checks_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_checks")),
    )
    with op.batch_alter_table("health_checks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_health_checks_environment_status",
            ["environment_id", "overall_status"],
            unique=False,
        )
        batch_op.create_index(
            "ix_health_checks_service_timestamp", ["service_id", "timestamp"], unique=False
        )
        batch_op.create_index(
            "ix_health_checks_target_timestamp", ["target", "timestamp"], unique=False
        )

    op.create_table(
        "incidents",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "healthy",
                "degraded",
                "unhealthy",
                name="incident_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("recovery_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_incidents_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incidents_service_started", ["service_id", "started_at"], unique=False
        )
        batch_op.create_index(
            "uq_incidents_one_open",
            ["service_id"],
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )

    op.create_table(
        "maintenance_windows",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_maintenance_windows_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_windows")),
    )
    with op.batch_alter_table("maintenance_windows", schema=None) as batch_op:
        batch_op.create_index(
            "ix_maintenance_service_start", ["service_id", "starts_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("maintenance_windows", schema=None) as batch_op:
        batch_op.drop_index("ix_maintenance_service_start")

    op.drop_table("maintenance_windows")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_incidents_one_open",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index("ix_incidents_service_started")

    op.drop_table("incidents")
    with op.batch_alter_table("health_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_health_checks_target_timestamp")
        batch_op.drop_index("ix_health_checks_service_timestamp")
        batch_op.drop_index("ix_health_checks_environment_status")

    op.drop_table("health_checks")
    with op.batch_alter_table("downtime", schema=None) as batch_op:
        batch_op.drop_index("ix_downtime_service_start")

    op.drop_table("downtime")
    op.drop_table("notification_channels")
    with op.batch_alter_table("probe_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_probe_claims_claimed_at"))

    op.drop_table("probe_claims")
    with op.batch_alter_table("health_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_health_states_service_id"))

    op.drop_table("health_states")
    with op.batch_alter_table("health_rollups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_health_rollups_service_id"))

    op.drop_table("health_rollups")

    _remove_health_history()
    _set_entity_kinds(OLD_KINDS)


def _remove_health_history() -> None:
    """Health rows cannot survive the old CHECK; the append-only guard is lifted to remove them."""
    delete = "DELETE FROM status_history WHERE entity_type IN ('service_health', 'replica_health')"
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS status_history_no_delete")
        op.execute(delete)
        op.execute(
            "CREATE TRIGGER status_history_no_delete BEFORE DELETE ON status_history "
            "BEGIN SELECT RAISE(ABORT, 'status_history is append-only'); END"
        )
        return
    op.execute("ALTER TABLE status_history DISABLE TRIGGER status_history_append_only")
    op.execute(delete)
    op.execute("ALTER TABLE status_history ENABLE TRIGGER status_history_append_only")
