"""metrics: series, raw samples, rollups, alert rules and their incidents; ingest tokens

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    op.create_table(
        "metric_series",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=True),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column(
            "source",
            _enum("metric_source", "application", "infrastructure", "external"),
            nullable=False,
        ),
        sa.Column("benchmark", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("threshold_warning", sa.Float(), nullable=True),
        sa.Column("threshold_critical", sa.Float(), nullable=True),
        sa.Column(
            "status", _enum("metric_status", "healthy", "warning", "critical"), nullable=False
        ),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retention_raw", sa.Integer(), nullable=True),
        sa.Column("retention_1m", sa.Integer(), nullable=True),
        sa.Column("retention_5m", sa.Integer(), nullable=True),
        sa.Column("retention_1h", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_metric_series_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_series")),
        sa.UniqueConstraint("key", name=op.f("uq_metric_series_key")),
    )
    op.create_index("ix_metric_series_name", "metric_series", ["name"])
    op.create_index(
        "ix_metric_series_environment_name", "metric_series", ["environment_id", "name"]
    )
    op.create_index(op.f("ix_metric_series_service_id"), "metric_series", ["service_id"])

    op.create_table(
        "metric_samples",
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_metric_samples_series_ts", "metric_samples", ["series_id", "ts"])
    op.create_index("ix_metric_samples_ts", "metric_samples", ["ts"])

    op.create_table(
        "metric_rollups",
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.Column("sketch", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "series_id", "resolution", "bucket", name=op.f("pk_metric_rollups")
        ),
    )
    op.create_index(
        "ix_metric_rollups_resolution_bucket", "metric_rollups", ["resolution", "bucket"]
    )
    op.create_table(
        "metric_rollup_progress",
        sa.Column("resolution", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("done_until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("resolution", name=op.f("pk_metric_rollup_progress")),
    )

    op.create_table(
        "metric_alert_rules",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=True),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("expression", sa.String(length=20), nullable=False),
        sa.Column("per_metric", sa.String(length=200), nullable=True),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("comparator", sa.String(length=2), nullable=False),
        sa.Column("warning", sa.Float(), nullable=True),
        sa.Column("critical", sa.Float(), nullable=True),
        sa.Column("for_m", sa.Integer(), nullable=False),
        sa.Column("for_n", sa.Integer(), nullable=False),
        sa.Column("recover_n", sa.Integer(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column(
            "status", _enum("metric_rule_status", "healthy", "warning", "critical"), nullable=False
        ),
        sa.Column("history", JSON, nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_metric_alert_rules_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_metric_alert_rules_service_id_services"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_alert_rules")),
        sa.UniqueConstraint("name", "service_id", name="uq_metric_alert_rules_name"),
    )
    op.create_index(op.f("ix_metric_alert_rules_service_id"), "metric_alert_rules", ["service_id"])
    op.create_table(
        "metric_incidents",
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "status",
            _enum("metric_incident_status", "healthy", "warning", "critical"),
            nullable=False,
        ),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("recovery_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["metric_alert_rules.id"],
            name=op.f("fk_metric_incidents_rule_id_metric_alert_rules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_incidents")),
    )
    op.create_index(op.f("ix_metric_incidents_rule_id"), "metric_incidents", ["rule_id"])
    op.create_index(
        "uq_metric_incidents_one_open",
        "metric_incidents",
        ["rule_id"],
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )

    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("environment_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_api_tokens_environment_id_environments"),
            "environments",
            ["environment_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_constraint(
            op.f("fk_api_tokens_environment_id_environments"), type_="foreignkey"
        )
        batch_op.drop_column("environment_id")
        batch_op.drop_column("scope")
    op.drop_table("metric_incidents")
    op.drop_table("metric_alert_rules")
    op.drop_table("metric_rollup_progress")
    op.drop_table("metric_rollups")
    op.drop_table("metric_samples")
    op.drop_table("metric_series")
