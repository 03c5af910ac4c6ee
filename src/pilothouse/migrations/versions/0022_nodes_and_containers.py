"""nodes and containers: node labels, the image digest a replica runs

`nodes` gains `labels` (JSON object; a placement selector matches them). `replicas` gains
`image_digest` (`sha256:` + 64 hex: the digest of the image a container replica runs, checked
against its artifact's). Nodes recorded before this revision get no labels.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(
            sa.Column(
                "labels",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default=sa.text("'{}'"),
            )
        )
    with op.batch_alter_table("nodes") as batch:
        batch.alter_column("labels", server_default=None)
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("image_digest", sa.String(length=71), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("image_digest")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("labels")
