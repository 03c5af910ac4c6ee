"""node fence pending: a lost node's replicas are fenced until it succeeded

`nodes.fence_pending_since` is set when a node is found unreachable with live replicas on it
(they are marked failed, their processes may still run there) and cleared once fencing stopped
whatever the store does not hold live there (nodes/watch.py retries every probe until then);
`node remove` is refused while it is set.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fence_pending_since", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("fence_pending_since")
