"""deployer role and deploy hooks

`users.role` may be `deployer` (CI: register artifacts, deploy, roll back). `deploy_hooks` holds
the inbound deploy webhooks (sealed HMAC secret, branch/tag rules) and `hook_deliveries` every
delivery id a hook accepted (unique per hook: replays are refused).

The role column is a VARCHAR with a CHECK constraint (core/types.str_enum); the constraint is
replaced by one that also allows `deployer`. Downgrading refuses while a deployer exists
(the old constraint could not hold the row).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("viewer", "operator", "admin")
NEW = ("viewer", "deployer", "operator", "admin")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _role(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name="role", native_enum=False, create_constraint=True, length=32)


def _swap(before: tuple[str, ...], after: tuple[str, ...]) -> None:
    if op.get_context().dialect.name == "sqlite":
        # SQLite cannot alter a constraint: the batch copy rebuilds the table with the new one.
        with op.batch_alter_table("users") as batch:
            batch.drop_constraint(op.f("ck_users_role"), type_="check")
            batch.alter_column(
                "role", existing_type=_role(before), type_=_role(after), existing_nullable=False
            )
        return
    allowed = ", ".join(f"'{v}'" for v in after)
    op.drop_constraint(op.f("ck_users_role"), "users", type_="check")
    op.create_check_constraint(op.f("ck_users_role"), "users", f"role IN ({allowed})")


def upgrade() -> None:
    _swap(OLD, NEW)
    op.create_table(
        "deploy_hooks",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("rules", JSON, nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_delivery_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_deploy_hooks_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deploy_hooks")),
        sa.UniqueConstraint("name", name="uq_deploy_hooks_name"),
    )
    op.create_table(
        "hook_deliveries",
        sa.Column("hook_id", sa.Uuid(), nullable=False),
        sa.Column("delivery", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=500), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hook_id"],
            ["deploy_hooks.id"],
            name=op.f("fk_hook_deliveries_hook_id_deploy_hooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_deliveries")),
        sa.UniqueConstraint("hook_id", "delivery", name="uq_hook_deliveries_hook_id_delivery"),
    )
    op.create_index(
        op.f("ix_hook_deliveries_hook_id"), "hook_deliveries", ["hook_id"], unique=False
    )


def downgrade() -> None:
    deployers = op.get_bind().scalar(sa.text("SELECT count(*) FROM users WHERE role = 'deployer'"))
    if deployers:
        raise RuntimeError(f"{deployers} deployer user(s) exist: change their role first")
    op.drop_index(op.f("ix_hook_deliveries_hook_id"), table_name="hook_deliveries")
    op.drop_table("hook_deliveries")
    op.drop_table("deploy_hooks")
    _swap(NEW, OLD)
