"""deployer role: users.role may be `deployer` (CI: register artifacts, deploy, roll back)

The role column is a VARCHAR with a CHECK constraint (core/types.str_enum); the constraint is
replaced by one that also allows `deployer`. Downgrading refuses while a deployer exists
(the old constraint could not hold the row).

Revision ID: 0023
Revises: 0016
Create Date: 2026-12-01 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("viewer", "operator", "admin")
NEW = ("viewer", "deployer", "operator", "admin")


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


def downgrade() -> None:
    deployers = op.get_bind().scalar(sa.text("SELECT count(*) FROM users WHERE role = 'deployer'"))
    if deployers:
        raise RuntimeError(f"{deployers} deployer user(s) exist: change their role first")
    _swap(NEW, OLD)
