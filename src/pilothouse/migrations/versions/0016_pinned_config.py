"""pinned config: each deployment records the variable versions it delivered

`deployment_pins` holds one row per variable a deployment delivered (name, source, env_vars row
and version; never a value). `deployments` gains `config_pinned_at`, `config_from` (the release
whose pins a rollback or a scale copied) and `driver_settings` (the driver settings it ran with).
Deployments recorded before this revision have no pins: they keep delivering current values.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("config_pinned_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("config_from", sa.Uuid(), nullable=True))
        batch.add_column(
            sa.Column(
                "driver_settings",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch.create_foreign_key(
            op.f("fk_deployments_config_from_deployments"),
            "deployments",
            ["config_from"],
            ["id"],
        )
    op.create_table(
        "deployment_pins",
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "environment",
                "service",
                "feature",
                "config",
                name="pin_source",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("var_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("is_secret", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_pins_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["var_id"], ["env_vars.id"], name=op.f("fk_deployment_pins_var_id_env_vars")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_pins")),
        sa.UniqueConstraint("deployment_id", "key", name="uq_deployment_pins_deployment_key"),
    )


def downgrade() -> None:
    op.drop_table("deployment_pins")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_constraint(op.f("fk_deployments_config_from_deployments"), type_="foreignkey")
        batch.drop_column("driver_settings")
        batch.drop_column("config_from")
        batch.drop_column("config_pinned_at")
