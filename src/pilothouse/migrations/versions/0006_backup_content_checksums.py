"""backup content checksums: per-table checksums on backups, a per-target switch

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("backups") as batch:
        batch.add_column(
            sa.Column(
                "table_checksums",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
    with op.batch_alter_table("backup_targets") as batch:
        batch.add_column(
            sa.Column("content_checksums", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("backup_targets") as batch:
        batch.drop_column("content_checksums")
    with op.batch_alter_table("backups") as batch:
        batch.drop_column("table_checksums")
