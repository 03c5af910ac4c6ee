"""release engine: leases, one active deployment, replica runtime

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:08:56.836575
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fail_extra_active_deployments() -> None:
    """Before 0002 a service could hold several active deployments; keep the newest one.

    The others become failed (with a status_history row each), so the new unique index can be
    built and nothing is left claiming to be in progress.
    """
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, service_id, status FROM deployments "
            "WHERE status IN ('pending', 'building', 'deploying') "
            "ORDER BY service_id, created_at DESC"
        )
    ).all()
    seen: set[object] = set()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    for dep_id, service_id, status in rows:
        if service_id not in seen:
            seen.add(service_id)
            continue
        bind.execute(
            sa.text(
                "UPDATE deployments SET status = 'failed', completed_at = :now, "
                "error_message = 'superseded by a newer deployment (upgrade to schema 0002)' "
                "WHERE id = :id"
            ),
            {"now": now, "id": dep_id},
        )
        bind.execute(
            sa.text(
                "INSERT INTO status_history (id, entity_type, entity_id, from_status, to_status, "
                "actor, reason, changed_at) VALUES (:hid, 'deployment', :id, :src, 'failed', "
                "'migration 0002', 'superseded by a newer deployment', :now)"
            ),
            {
                "hid": uuid.uuid4().hex if bind.dialect.name == "sqlite" else uuid.uuid4(),
                "id": dep_id,
                "src": status,
                "now": now,
            },
        )


def upgrade() -> None:
    _fail_extra_active_deployments()
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "uq_deployments_one_active",
            ["service_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'building', 'deploying')"),
            postgresql_where=sa.text("status IN ('pending', 'building', 'deploying')"),
        )

    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("log_path", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("exit_code", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("keep_running", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("next_restart_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.drop_column("next_restart_at")
        batch_op.drop_column("keep_running")
        batch_op.drop_column("exit_code")
        batch_op.drop_column("log_path")
        batch_op.drop_column("version")

    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_deployments_one_active",
            sqlite_where=sa.text("status IN ('pending', 'building', 'deploying')"),
            postgresql_where=sa.text("status IN ('pending', 'building', 'deploying')"),
        )
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
