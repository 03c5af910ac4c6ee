"""Replica lifecycle: restart reason, limit enforcement and the memory over-limit clock

A replica now carries why it last failed or was restarted (a crash, `liveness: 3 failed checks:
HTTP 503`, `memory: ... over the ... MB limit`, or that pilothouse gave up on it), how its CPU
and memory limits are enforced (`cgroup` or `sampling`), and since when it has been over its
memory limit (the grace period of the sampling fallback).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("restart_reason", sa.String(500), nullable=True))
        batch.add_column(sa.Column("enforcement", sa.String(16), nullable=True))
        batch.add_column(sa.Column("memory_over_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("memory_over_since")
        batch.drop_column("enforcement")
        batch.drop_column("restart_reason")
