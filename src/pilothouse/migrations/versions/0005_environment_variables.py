"""environment variables

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 17:03:38.557264
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "var_requirements",
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=True),
        sa.Column(
            "args",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_var_requirements_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_var_requirements")),
        sa.UniqueConstraint("environment_id", "key", name="uq_var_requirements_env_key"),
    )
    op.create_table(
        "env_vars",
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("scope", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value_encrypted", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("is_secret", sa.Boolean(), nullable=False),
        sa.Column("platform_synced", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_env_vars_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_env_vars_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_env_vars")),
    )
    with op.batch_alter_table("env_vars", schema=None) as batch_op:
        batch_op.create_index(
            "uq_env_vars_live_key",
            ["environment_id", "scope", "key"],
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    op.create_table(
        "env_var_versions",
        sa.Column("var_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "set",
                "unset",
                "revert",
                name="env_var_action",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("value_encrypted", sa.Text(), nullable=True),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("is_secret", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["var_id"], ["env_vars.id"], name=op.f("fk_env_var_versions_var_id_env_vars")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_env_var_versions")),
        sa.UniqueConstraint("var_id", "version", name="uq_env_var_versions_var_version"),
    )
    with op.batch_alter_table("env_var_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_env_var_versions_var_id"), ["var_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("env_var_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_env_var_versions_var_id"))

    op.drop_table("env_var_versions")
    with op.batch_alter_table("env_vars", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_env_vars_live_key",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    op.drop_table("env_vars")
    op.drop_table("var_requirements")
