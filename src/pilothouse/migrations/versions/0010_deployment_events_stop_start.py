"""deployments.event_type gains stop and start (`pilothouse service stop` / `service start`)

A service is stopped and started through deployments of its live release, carried out by the
release engine under the deployment's lease (one active deployment per service), so a stop
cannot race a deploy. The event_type CHECK constraint lists the two new values.

On SQLite the table is rebuilt (batch mode); its partial unique index (one active deployment
per service) is re-created with its WHERE clause. A downgrade records stop and start rows as
`restart` (the nearest older kind) before the constraint narrows again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("deploy", "rollback", "restart", "config_update", "scale")
NEW = (*OLD, "stop", "start")
CONSTRAINT = "deployment_event_type"  # named ck_deployments_deployment_event_type
ACTIVE_WHERE = "status IN ('pending', 'building', 'deploying')"


def _check(kinds: tuple[str, ...]) -> str:
    return "event_type IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _set_event_types(kinds: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("deployments", recreate="always") as batch_op:
            batch_op.drop_constraint(op.f(f"ck_deployments_{CONSTRAINT}"), type_="check")
            batch_op.create_check_constraint(CONSTRAINT, _check(kinds))
        # The rebuilt table must keep "one active deployment per service" exactly as declared.
        op.execute("DROP INDEX IF EXISTS uq_deployments_one_active")
        op.create_index(
            "uq_deployments_one_active",
            "deployments",
            ["service_id"],
            unique=True,
            sqlite_where=sa.text(ACTIVE_WHERE),
        )
        return
    op.drop_constraint(op.f(f"ck_deployments_{CONSTRAINT}"), "deployments", type_="check")
    op.create_check_constraint(CONSTRAINT, "deployments", _check(kinds))


def upgrade() -> None:
    _set_event_types(NEW)


def downgrade() -> None:
    op.execute(
        "UPDATE deployments SET event_type = 'restart' WHERE event_type IN ('stop', 'start')"
    )
    _set_event_types(OLD)
