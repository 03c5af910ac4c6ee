"""replica_figures: app-reported figures of each replica, kept by the metrics scraper

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replica_figures",
        sa.Column("replica_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("scraped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("up", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=True),
        sa.Column("total_requests", sa.BigInteger(), nullable=True),
        sa.Column("total_errors", sa.BigInteger(), nullable=True),
        sa.Column("window_requests", sa.BigInteger(), nullable=True),
        sa.Column("window_errors", sa.BigInteger(), nullable=True),
        sa.Column("error_rate_5min", sa.Float(), nullable=True),
        sa.Column("active_connections", sa.Integer(), nullable=True),
        sa.Column("uptime_seconds", sa.Integer(), nullable=True),
        sa.Column("memory_usage_mb", sa.Float(), nullable=True),
        sa.Column(
            "points",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("replica_id", name=op.f("pk_replica_figures")),
    )
    with op.batch_alter_table("replica_figures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_replica_figures_service_id"), ["service_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("replica_figures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replica_figures_service_id"))
    op.drop_table("replica_figures")
