"""foundation tables

Revision ID: 0001
Revises:
Create Date: 2026-11-22 13:44:15.599777
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY = ("status_history", "audit_log")


def _create_append_only_guards() -> None:
    """status_history and audit_log are immutable: the database refuses UPDATE and DELETE."""
    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        return
    op.execute(
        "CREATE FUNCTION pilothouse_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION pilothouse_append_only()"
        )


def _drop_append_only_guards() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        return
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    op.execute("DROP FUNCTION IF EXISTS pilothouse_append_only()")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("entity_type", sa.String(length=50), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column(
            "changes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_log_entity", ["entity_type", "entity_id"], unique=False)

    op.create_table(
        "nodes",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("address", sa.String(length=253), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "ready",
                "draining",
                "down",
                name="node_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "capacity",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("name", name=op.f("uq_nodes_name")),
    )
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "viewer",
                "operator",
                "admin",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "environments",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "type",
            sa.Enum(
                "development",
                "staging",
                "production",
                name="environment_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("domain", sa.String(length=253), nullable=True),
        sa.Column("driver", sa.String(length=32), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "features",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "limits",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_environments_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
    )
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_environments_owner_deleted", ["owner_id", "deleted_at"], unique=False
        )
        batch_op.create_index(
            "uq_environments_live_name",
            ["name"],
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    op.create_table(
        "status_history",
        sa.Column(
            "entity_type",
            sa.Enum(
                "deployment",
                "service",
                "replica",
                name="entity_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=True),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("changed_by", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["changed_by"],
            ["users.id"],
            name=op.f("fk_status_history_changed_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_history")),
    )
    with op.batch_alter_table("status_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_status_history_entity", ["entity_type", "entity_id", "changed_at"], unique=False
        )

    op.create_table(
        "environment_grants",
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("granted_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_environment_grants_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["granted_by"], ["users.id"], name=op.f("fk_environment_grants_granted_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_environment_grants_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("environment_id", "user_id", name=op.f("pk_environment_grants")),
    )
    with op.batch_alter_table("environment_grants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_environment_grants_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "services",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("image", sa.String(length=500), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("target_replicas", sa.Integer(), nullable=False),
        sa.Column("cpu_cores", sa.Float(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("gpu_units", sa.Integer(), nullable=False),
        sa.Column("storage_gb", sa.Integer(), nullable=False),
        sa.Column("public_url", sa.String(length=500), nullable=True),
        sa.Column(
            "driver_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "health_check",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "scheduled",
                "running",
                "stopped",
                "failed",
                "deleted",
                name="service_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "cpu_cores >= 0.5 AND cpu_cores <= 32", name=op.f("ck_services_cpu_range")
        ),
        sa.CheckConstraint("gpu_units BETWEEN 0 AND 8", name=op.f("ck_services_gpu_range")),
        sa.CheckConstraint(
            "memory_mb BETWEEN 512 AND 65536", name=op.f("ck_services_memory_range")
        ),
        sa.CheckConstraint("storage_gb BETWEEN 1 AND 1000", name=op.f("ck_services_storage_range")),
        sa.CheckConstraint(
            "target_replicas BETWEEN 1 AND 100", name=op.f("ck_services_target_replicas_range")
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_services_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_services_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
    )
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.create_index("ix_services_owner_deleted", ["owner_id", "deleted_at"], unique=False)
        batch_op.create_index(
            "uq_services_live_env_name",
            ["environment_id", "name"],
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    op.create_table(
        "artifacts",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("commit_sha", sa.String(length=40), nullable=False),
        sa.Column("git_tag", sa.String(length=100), nullable=True),
        sa.Column("image_uri", sa.String(length=500), nullable=True),
        sa.Column("image_digest", sa.String(length=71), nullable=True),
        sa.Column("size_mb", sa.Integer(), nullable=True),
        sa.Column("changelog", sa.Text(), nullable=True),
        sa.Column("deployed", sa.Boolean(), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_artifacts_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_artifacts_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_commit_sha"), ["commit_sha"], unique=False)
        batch_op.create_index(
            "ix_artifacts_service_created", ["service_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "uq_artifacts_live_service_version",
            ["service_id", "version"],
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.create_index(
            "uq_artifacts_one_deployed",
            ["service_id"],
            unique=True,
            sqlite_where=sa.text("deployed"),
            postgresql_where=sa.text("deployed"),
        )

    op.create_table(
        "deployments",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("artifact_id", sa.Uuid(), nullable=True),
        sa.Column("previous_artifact_id", sa.Uuid(), nullable=True),
        sa.Column("rollback_from", sa.Uuid(), nullable=True),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("commit_sha", sa.String(length=40), nullable=True),
        sa.Column("commit_message", sa.String(length=500), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "building",
                "deploying",
                "success",
                "failed",
                "rolled_back",
                name="deployment_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "event_type",
            sa.Enum(
                "deploy",
                "rollback",
                "restart",
                "config_update",
                "scale",
                name="deployment_event_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "triggered_by",
            sa.Enum(
                "manual",
                "ci",
                "automated",
                "github_action",
                name="deployment_trigger",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("operator", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("build_time_ms", sa.Integer(), nullable=True),
        sa.Column("deploy_time_ms", sa.Integer(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("migration_applied", sa.Boolean(), nullable=False),
        sa.Column("migration_version", sa.String(length=200), nullable=True),
        sa.Column("backup_created", sa.Boolean(), nullable=False),
        sa.Column("backup_id", sa.Uuid(), nullable=True),
        sa.Column("health_check_passed", sa.Boolean(), nullable=False),
        sa.Column("instances_deployed", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("rollback_reason", sa.Text(), nullable=True),
        sa.Column("ci_run_id", sa.String(length=100), nullable=True),
        sa.Column("logs_url", sa.String(length=1000), nullable=True),
        sa.Column("artifacts_url", sa.String(length=1000), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_deployments_artifact_id_artifacts")
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_deployments_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_deployments_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["previous_artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_deployments_previous_artifact_id_artifacts"),
        ),
        sa.ForeignKeyConstraint(
            ["rollback_from"],
            ["deployments.id"],
            name=op.f("fk_deployments_rollback_from_deployments"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_deployments_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deployments_commit_sha"), ["commit_sha"], unique=False)
        batch_op.create_index("ix_deployments_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_deployments_environment_status", ["environment_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_deployments_owner_created", ["owner_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_deployments_service_created", ["service_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_deployments_status_created", ["status", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_deployments_triggered_by"), ["triggered_by"], unique=False
        )

    op.create_table(
        "deployment_logs",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "level",
            sa.Enum(
                "debug",
                "info",
                "warn",
                "error",
                name="log_level",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_logs_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_deployment_logs")),
    )
    with op.batch_alter_table("deployment_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deployment_logs_deployment_seq", ["deployment_id", "seq"], unique=False
        )

    op.create_table(
        "replicas",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("artifact_id", sa.Uuid(), nullable=True),
        sa.Column("node_id", sa.Uuid(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "starting",
                "running",
                "stopping",
                "stopped",
                "failed",
                name="replica_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "health",
            sa.Enum(
                "unknown",
                "healthy",
                "degraded",
                "unhealthy",
                name="health_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("process_started_at", sa.Float(), nullable=True),
        sa.Column("container_id", sa.String(length=128), nullable=True),
        sa.Column(
            "ports",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("restart_count", sa.Integer(), nullable=False),
        sa.Column("last_restart_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_mb", sa.Float(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_replicas_artifact_id_artifacts")
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_replicas_deployment_id_deployments"),
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_replicas_node_id_nodes"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_replicas_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.create_index("ix_replicas_service_status", ["service_id", "status"], unique=False)

    _create_append_only_guards()


def downgrade() -> None:
    _drop_append_only_guards()
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.drop_index("ix_replicas_service_status")

    op.drop_table("replicas")
    with op.batch_alter_table("deployment_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_deployment_logs_deployment_seq")

    op.drop_table("deployment_logs")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployments_triggered_by"))
        batch_op.drop_index("ix_deployments_status_created")
        batch_op.drop_index("ix_deployments_service_created")
        batch_op.drop_index("ix_deployments_owner_created")
        batch_op.drop_index("ix_deployments_environment_status")
        batch_op.drop_index("ix_deployments_created_at")
        batch_op.drop_index(batch_op.f("ix_deployments_commit_sha"))

    op.drop_table("deployments")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_artifacts_one_deployed",
            sqlite_where=sa.text("deployed"),
            postgresql_where=sa.text("deployed"),
        )
        batch_op.drop_index(
            "uq_artifacts_live_service_version",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_index("ix_artifacts_service_created")
        batch_op.drop_index(batch_op.f("ix_artifacts_commit_sha"))

    op.drop_table("artifacts")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_services_live_env_name",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_index("ix_services_owner_deleted")

    op.drop_table("services")
    with op.batch_alter_table("environment_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_environment_grants_user_id"))

    op.drop_table("environment_grants")
    with op.batch_alter_table("status_history", schema=None) as batch_op:
        batch_op.drop_index("ix_status_history_entity")

    op.drop_table("status_history")
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_environments_live_name",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_index("ix_environments_owner_deleted")

    op.drop_table("environments")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))

    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_table("nodes")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_entity")
        batch_op.drop_index("ix_audit_log_at")

    op.drop_table("audit_log")
