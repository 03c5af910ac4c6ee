"""scaling cohorts: a round's evaluation recorded once per cohort, not once per policy

`scaling_cohorts` holds policies last evaluated together and when (`evaluated_at`);
`scaling_policies.cohort_id` replaces `scaling_policies.evaluated_at`, whose per-policy update
(10,000 rows a round for 10,000 policies) was most of the store's work in a round. Existing
evaluation times are kept: one cohort per distinct time. Downgrading copies them back.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02 01:00:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scaling_cohorts",
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_cohorts")),
    )
    with op.batch_alter_table("scaling_policies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cohort_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_scaling_policies_cohort_id_scaling_cohorts"),
            "scaling_cohorts",
            ["cohort_id"],
            ["id"],
            ondelete="SET NULL",
        )
    conn = op.get_bind()
    policies = sa.table(
        "scaling_policies",
        sa.column("id", sa.Uuid()),
        sa.column("evaluated_at", sa.DateTime(timezone=True)),
        sa.column("cohort_id", sa.Uuid()),
    )
    cohorts = sa.table(
        "scaling_cohorts", sa.column("id", sa.Uuid()), sa.column("evaluated_at", sa.DateTime())
    )
    times = conn.execute(
        sa.select(policies.c.evaluated_at).where(policies.c.evaluated_at.is_not(None)).distinct()
    ).scalars()
    for at in list(times):
        cohort = uuid.uuid4()
        conn.execute(sa.insert(cohorts).values(id=cohort, evaluated_at=at))
        conn.execute(
            sa.update(policies).where(policies.c.evaluated_at == at).values(cohort_id=cohort)
        )
    with op.batch_alter_table("scaling_policies", schema=None) as batch_op:
        batch_op.drop_column("evaluated_at")


def downgrade() -> None:
    with op.batch_alter_table("scaling_policies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE scaling_policies SET evaluated_at = (SELECT c.evaluated_at FROM scaling_cohorts c"
        " WHERE c.id = scaling_policies.cohort_id) WHERE cohort_id IS NOT NULL"
    )
    with op.batch_alter_table("scaling_policies", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_scaling_policies_cohort_id_scaling_cohorts"), type_="foreignkey"
        )
        batch_op.drop_column("cohort_id")
    op.drop_table("scaling_cohorts")
