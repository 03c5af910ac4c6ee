"""backups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 16:24:01.335816
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OLD_KINDS = ("deployment", "service", "replica", "service_health", "replica_health")
NEW_KINDS = (*OLD_KINDS, "backup")


def _kinds_check(kinds: tuple[str, ...]) -> str:
    return "entity_type IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _set_entity_kinds(kinds: tuple[str, ...]) -> None:
    """status_history.entity_type gains (or loses) the backup kind.

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
        "job_slots",
        sa.Column("job", sa.String(length=50), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker", sa.String(length=100), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job", "key", "slot", name=op.f("pk_job_slots")),
    )
    op.create_table(
        "backup_targets",
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("environment_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "engine",
            sa.Enum(
                "postgresql",
                "mariadb",
                "sqlite",
                name="backup_engine",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("database_name", sa.String(length=255), nullable=False),
        sa.Column("dsn_encrypted", sa.Text(), nullable=False),
        sa.Column("dsn_display", sa.String(length=1000), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("drill_schedule", sa.String(length=100), nullable=True),
        sa.Column(
            "storage",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "retention",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("retry_delay_seconds", sa.Integer(), nullable=False),
        sa.Column("before_deploy", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_backup_targets_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_backup_targets_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_targets")),
    )
    with op.batch_alter_table("backup_targets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_backup_targets_environment_id"), ["environment_id"], unique=False
        )
        batch_op.create_index(
            "uq_backup_targets_live_name",
            ["name"],
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    op.create_table(
        "backups",
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column(
            "backup_type",
            sa.Enum(
                "full",
                "incremental",
                "manual",
                name="backup_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "in_progress",
                "completed",
                "failed",
                "expired",
                name="backup_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "triggered_by",
            sa.Enum(
                "scheduled",
                "manual",
                "pre_deployment",
                name="backup_trigger",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "gfs_class",
            sa.Enum(
                "daily",
                "weekly",
                "monthly",
                "manual",
                name="backup_gfs_class",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("is_monthly_archive", sa.Boolean(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column(
            "engine",
            sa.Enum(
                "postgresql",
                "mariadb",
                "sqlite",
                name="backup_engine",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("database_name", sa.String(length=255), nullable=False),
        sa.Column("dump_tool_version", sa.String(length=200), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=True),
        sa.Column("backup_size_mb", sa.Integer(), nullable=True),
        sa.Column("compressed_size_mb", sa.Integer(), nullable=True),
        sa.Column("compression_ratio", sa.Float(), nullable=True),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("encryption_algorithm", sa.String(length=40), nullable=False),
        sa.Column("compression", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("checksum_sha256", sa.String(length=64), nullable=True),
        sa.Column("storage_kind", sa.String(length=20), nullable=False),
        sa.Column("object_key", sa.String(length=500), nullable=False),
        sa.Column("storage_location", sa.String(length=1000), nullable=False),
        sa.Column("storage_url", sa.String(length=1500), nullable=False),
        sa.Column(
            "table_counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("integrity_check_passed", sa.Boolean(), nullable=True),
        sa.Column("integrity_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("integrity_detail", sa.Text(), nullable=True),
        sa.Column("restore_tested", sa.Boolean(), nullable=False),
        sa.Column("restore_tested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("restore_test_passed", sa.Boolean(), nullable=True),
        sa.Column("restore_test_detail", sa.Text(), nullable=True),
        sa.Column("retention_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("artifact_id", sa.Uuid(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_backups_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["backup_targets.id"], name=op.f("fk_backups_target_id_backup_targets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backups")),
        sa.UniqueConstraint("target_id", "scheduled_for", name="uq_backups_target_slot"),
    )
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_backups_environment_status", ["environment", "status"], unique=False
        )
        batch_op.create_index(
            "ix_backups_retention_expires_at", ["retention_expires_at"], unique=False
        )
        batch_op.create_index("ix_backups_started_at", ["started_at"], unique=False)
        batch_op.create_index(
            "ix_backups_target_started", ["target_id", "started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_index("ix_backups_target_started")
        batch_op.drop_index("ix_backups_started_at")
        batch_op.drop_index("ix_backups_retention_expires_at")
        batch_op.drop_index("ix_backups_environment_status")

    op.drop_table("backups")
    with op.batch_alter_table("backup_targets", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_backup_targets_live_name",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_backup_targets_environment_id"))

    op.drop_table("backup_targets")
    op.drop_table("job_slots")
    _set_entity_kinds(OLD_KINDS)
