"""autoscaling: scaling policies (one per service) and scaling events (seed 000)

`scaling_policies` keeps the seed's fields and ranges (min <= max within 1-100, thresholds 0-1
with up > down) plus the mode, metric, rate limits, scheduled floors and the last evaluation.
`scaling_events` records every scaling action: the autoscaler's, a manual scale's.

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-01 21:30:34.750770
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scaling_events",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "scale_up",
                "scale_down",
                "manual_scale",
                name="scaling_action",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("instances_before", sa.Integer(), nullable=False),
        sa.Column("instances_after", sa.Integer(), nullable=False),
        sa.Column("trigger_reason", sa.Text(), nullable=False),
        sa.Column("cpu_percent_avg", sa.Float(), nullable=True),
        sa.Column("memory_percent_avg", sa.Float(), nullable=True),
        sa.Column(
            "triggered_by",
            sa.Enum(
                "autoscaler",
                "manual",
                "deployment",
                name="scaling_trigger",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("triggered_by_user", sa.String(length=100), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_scaling_events_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_scaling_events_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_events")),
    )
    with op.batch_alter_table("scaling_events", schema=None) as batch_op:
        batch_op.create_index("ix_scaling_events_action", ["action"], unique=False)
        batch_op.create_index(
            "ix_scaling_events_environment_timestamp", ["environment_id", "timestamp"], unique=False
        )
        batch_op.create_index(
            "ix_scaling_events_service_timestamp", ["service_id", "timestamp"], unique=False
        )
        batch_op.create_index("ix_scaling_events_timestamp", ["timestamp"], unique=False)

    op.create_table(
        "scaling_policies",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("min_instances", sa.Integer(), nullable=False),
        sa.Column("max_instances", sa.Integer(), nullable=False),
        sa.Column("target_cpu_percent", sa.Float(), nullable=False),
        sa.Column("target_memory_percent", sa.Float(), nullable=False),
        sa.Column("scale_up_threshold", sa.Float(), nullable=False),
        sa.Column("scale_down_threshold", sa.Float(), nullable=False),
        sa.Column("scale_up_cooldown_seconds", sa.Integer(), nullable=False),
        sa.Column("scale_down_cooldown_seconds", sa.Integer(), nullable=False),
        sa.Column("evaluation_period_seconds", sa.Integer(), nullable=False),
        sa.Column("datapoints_to_trigger", sa.Integer(), nullable=False),
        sa.Column(
            "mode",
            sa.Enum(
                "step",
                "target",
                name="scaling_mode",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("metric_stat", sa.String(length=20), nullable=False),
        sa.Column(
            "metric_tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("metric_target", sa.Float(), nullable=True),
        sa.Column("metric_per_replica", sa.Boolean(), nullable=False),
        sa.Column("stabilization_seconds", sa.Integer(), nullable=False),
        sa.Column("max_step_up", sa.Integer(), nullable=False),
        sa.Column("max_step_down", sa.Integer(), nullable=False),
        sa.Column(
            "schedules",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_decision", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "min_instances >= 1 AND min_instances <= max_instances AND max_instances <= 100",
            name=op.f("ck_scaling_policies_instances_range"),
        ),
        sa.CheckConstraint(
            "scale_down_threshold >= 0 AND scale_up_threshold <= 1 "
            "AND scale_down_threshold < scale_up_threshold",
            name=op.f("ck_scaling_policies_thresholds_range"),
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_scaling_policies_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_scaling_policies_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_policies")),
        sa.UniqueConstraint("service_id", name=op.f("uq_scaling_policies_service_id")),
    )
    with op.batch_alter_table("scaling_policies", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scaling_policies_environment_id", ["environment_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("scaling_policies", schema=None) as batch_op:
        batch_op.drop_index("ix_scaling_policies_environment_id")

    op.drop_table("scaling_policies")
    with op.batch_alter_table("scaling_events", schema=None) as batch_op:
        batch_op.drop_index("ix_scaling_events_timestamp")
        batch_op.drop_index("ix_scaling_events_service_timestamp")
        batch_op.drop_index("ix_scaling_events_environment_timestamp")
        batch_op.drop_index("ix_scaling_events_action")

    op.drop_table("scaling_events")
