"""security findings: scans, findings, sightings, scan schedules, gate overrides (seed 002)

`security_scans` and `security_findings` carry seed 002's fields plus the scope, fingerprint and
triage columns; `security_finding_sightings` ties each finding to every scan that reported it;
`security_scan_schedules` holds cron scans per service; `security_gate_overrides` the admin
overrides of the deployment gate (each used by one deployment).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 21:31:57.044790
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "security_scan_schedules",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column(
            "type",
            sa.Enum(
                "dependency",
                "sast",
                "container",
                "iac",
                name="security_schedule_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("cron", sa.String(length=100), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_security_scan_schedules_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_security_scan_schedules_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_security_scan_schedules_service_id_services"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_scan_schedules")),
        sa.UniqueConstraint("service_id", "type", name="uq_security_scan_schedules_service_type"),
    )
    op.create_table(
        "security_gate_overrides",
        sa.Column("artifact_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_by_deployment_id", sa.Uuid(), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_security_gate_overrides_artifact_id_artifacts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_gate_overrides")),
    )
    with op.batch_alter_table("security_gate_overrides", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_security_gate_overrides_artifact_id"), ["artifact_id"], unique=False
        )

    op.create_table(
        "security_scans",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("artifact_id", sa.Uuid(), nullable=True),
        sa.Column(
            "type",
            sa.Enum(
                "dependency",
                "sast",
                "container",
                "iac",
                name="security_scan_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "running",
                "completed",
                "failed",
                name="security_scan_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("tool", sa.String(length=100), nullable=True),
        sa.Column("format", sa.String(length=20), nullable=True),
        sa.Column(
            "source",
            sa.Enum(
                "import",
                "run",
                "schedule",
                name="security_scan_source",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("report_sha256", sa.String(length=64), nullable=True),
        sa.Column("source_path", sa.String(length=1000), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "changes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_security_scans_artifact_id_artifacts")
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_security_scans_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_security_scans_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_security_scans_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_scans")),
    )
    with op.batch_alter_table("security_scans", schema=None) as batch_op:
        batch_op.create_index("ix_security_scans_artifact", ["artifact_id"], unique=False)
        batch_op.create_index(
            "ix_security_scans_environment_status", ["environment_id", "status"], unique=False
        )
        batch_op.create_index("ix_security_scans_started_at", ["started_at"], unique=False)
        batch_op.create_index("ix_security_scans_type", ["type"], unique=False)

    op.create_table(
        "security_findings",
        sa.Column("scan_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("scope_key", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("content_key", sa.String(length=64), nullable=True),
        sa.Column(
            "type",
            sa.Enum(
                "dependency",
                "sast",
                "container",
                "iac",
                name="security_finding_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("tool", sa.String(length=100), nullable=False),
        sa.Column("rule_id", sa.String(length=200), nullable=False),
        sa.Column(
            "severity",
            sa.Enum(
                "low",
                "medium",
                "high",
                "critical",
                name="security_severity",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("location", sa.String(length=1000), nullable=True),
        sa.Column("path", sa.String(length=1000), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("cwe_id", sa.String(length=20), nullable=True),
        sa.Column("remediation", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "resolved",
                "accepted_risk",
                "false_positive",
                name="security_finding_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_scan_id", sa.Uuid(), nullable=True),
        sa.Column("reopened_count", sa.Integer(), nullable=False),
        sa.Column("accepted_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("triage_reason", sa.String(length=1000), nullable=True),
        sa.Column("triaged_by", sa.String(length=100), nullable=True),
        sa.Column("triaged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sla_alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_security_findings_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["security_scans.id"],
            name=op.f("fk_security_findings_scan_id_security_scans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_findings")),
        sa.UniqueConstraint("scope_key", "fingerprint", name="uq_security_findings_scope_fp"),
    )
    with op.batch_alter_table("security_findings", schema=None) as batch_op:
        batch_op.create_index("ix_security_findings_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_security_findings_env_status", ["environment_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_security_findings_resolved", ["resolved", "severity"], unique=False
        )
        batch_op.create_index(
            "ix_security_findings_scan_severity", ["scan_id", "severity"], unique=False
        )
        batch_op.create_index("ix_security_findings_sla", ["status", "sla_due_at"], unique=False)

    op.create_table(
        "security_finding_sightings",
        sa.Column("finding_id", sa.Uuid(), nullable=False),
        sa.Column("scan_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["security_findings.id"],
            name=op.f("fk_security_finding_sightings_finding_id_security_findings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["security_scans.id"],
            name=op.f("fk_security_finding_sightings_scan_id_security_scans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "finding_id", "scan_id", name=op.f("pk_security_finding_sightings")
        ),
    )
    with op.batch_alter_table("security_finding_sightings", schema=None) as batch_op:
        batch_op.create_index("ix_security_finding_sightings_scan_id", ["scan_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("security_finding_sightings", schema=None) as batch_op:
        batch_op.drop_index("ix_security_finding_sightings_scan_id")

    op.drop_table("security_finding_sightings")
    with op.batch_alter_table("security_findings", schema=None) as batch_op:
        batch_op.drop_index("ix_security_findings_sla")
        batch_op.drop_index("ix_security_findings_scan_severity")
        batch_op.drop_index("ix_security_findings_resolved")
        batch_op.drop_index("ix_security_findings_env_status")
        batch_op.drop_index("ix_security_findings_created_at")

    op.drop_table("security_findings")
    with op.batch_alter_table("security_scans", schema=None) as batch_op:
        batch_op.drop_index("ix_security_scans_type")
        batch_op.drop_index("ix_security_scans_started_at")
        batch_op.drop_index("ix_security_scans_environment_status")
        batch_op.drop_index("ix_security_scans_artifact")

    op.drop_table("security_scans")
    with op.batch_alter_table("security_gate_overrides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_security_gate_overrides_artifact_id"))

    op.drop_table("security_gate_overrides")
    op.drop_table("security_scan_schedules")
