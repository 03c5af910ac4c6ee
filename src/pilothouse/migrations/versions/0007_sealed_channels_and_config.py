"""sealed channel credentials, channel delivery state, sealed environment config credentials

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification_channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("environment_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("secrets_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_notification_channels_environment_id_environments"),
            "environments",
            ["environment_id"],
            ["id"],
        )
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_sealed", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("config_key_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_column("config_key_id")
        batch_op.drop_column("config_sealed")
    with op.batch_alter_table("notification_channels", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_notification_channels_environment_id_environments"),
            type_="foreignkey",
        )
        batch_op.drop_column("consecutive_failures")
        batch_op.drop_column("last_error")
        batch_op.drop_column("last_failure_at")
        batch_op.drop_column("last_success_at")
        batch_op.drop_column("key_id")
        batch_op.drop_column("secrets_encrypted")
        batch_op.drop_column("environment_id")
