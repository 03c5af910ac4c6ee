"""Security scans and findings (seed 002 SecurityScan / SecurityFinding), the sightings that tie
a finding to every scan that reported it, scheduled scans, and gate overrides.

A finding belongs to a scope: (environment, scan type, target, tool), stored as `scope_key`;
within it the fingerprint is unique. `scan_id` is the scan that first reported it (seed 002's
foreign key); `security_finding_sightings` holds one row per (finding, scan) so "scans seen in",
first and last seen come from it, and a reimport that changes nothing rewrites no finding row.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, UUIDPk
from pilothouse.core.types import JSONType, str_enum
from pilothouse.findings.rules import FINDING_STATUSES, SCAN_STATUSES, SCAN_TYPES, SEVERITIES

SCAN_SOURCES = ("import", "run", "schedule")


class SecurityScan(UUIDPk, Base):
    __tablename__ = "security_scans"
    __table_args__ = (
        sa.Index("ix_security_scans_environment_status", "environment_id", "status"),
        sa.Index("ix_security_scans_started_at", "started_at"),
        sa.Index("ix_security_scans_type", "type"),
        sa.Index("ix_security_scans_artifact", "artifact_id"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    service_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("services.id"), default=None)
    artifact_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("artifacts.id"), default=None
    )
    type: Mapped[str] = mapped_column(str_enum(*SCAN_TYPES, name="security_scan_type"))
    status: Mapped[str] = mapped_column(
        str_enum(*SCAN_STATUSES, name="security_scan_status"), default="pending"
    )
    #: What was scanned (the service name by default): with type and tool, the dedup scope.
    target: Mapped[str] = mapped_column(sa.String(200))
    tool: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    format: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    source: Mapped[str] = mapped_column(
        str_enum(*SCAN_SOURCES, name="security_scan_source"), default="import"
    )
    #: sha256 of the imported report: a reimport of the same bytes takes a shortcut
    #: (findings/same_report.py).
    report_sha256: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    #: What `scan run` scans: the source directory (sast) or requirements file (dependency).
    source_path: Mapped[str | None] = mapped_column(sa.String(1000), default=None)
    #: A complete scan resolves what it no longer reports; a partial one only adds and updates.
    complete: Mapped[bool] = mapped_column(default=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    #: What the import changed: new, seen, reopened, resolved, renamed, rewritten.
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    error_message: Mapped[str | None] = mapped_column(sa.Text, default=None)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SecurityFinding(UUIDPk, Base):
    __tablename__ = "security_findings"
    __table_args__ = (
        sa.UniqueConstraint("scope_key", "fingerprint", name="uq_security_findings_scope_fp"),
        sa.Index("ix_security_findings_scan_severity", "scan_id", "severity"),
        sa.Index("ix_security_findings_created_at", "created_at"),
        sa.Index("ix_security_findings_resolved", "resolved", "severity"),
        sa.Index("ix_security_findings_env_status", "environment_id", "status"),
        sa.Index("ix_security_findings_sla", "status", "sla_due_at"),
    )

    scan_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("security_scans.id", ondelete="CASCADE")
    )
    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    service_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    scope_key: Mapped[str] = mapped_column(sa.String(64))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    content_key: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    type: Mapped[str] = mapped_column(str_enum(*SCAN_TYPES, name="security_finding_type"))
    tool: Mapped[str] = mapped_column(sa.String(100))
    rule_id: Mapped[str] = mapped_column(sa.String(200))
    severity: Mapped[str] = mapped_column(str_enum(*SEVERITIES, name="security_severity"))
    title: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str] = mapped_column(sa.Text)
    location: Mapped[str | None] = mapped_column(sa.String(1000), default=None)
    path: Mapped[str | None] = mapped_column(sa.String(1000), default=None)
    line: Mapped[int | None] = mapped_column(default=None)
    cwe_id: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    remediation: Mapped[str | None] = mapped_column(sa.Text, default=None)
    status: Mapped[str] = mapped_column(
        str_enum(*FINDING_STATUSES, name="security_finding_status"), default="open"
    )
    resolved: Mapped[bool] = mapped_column(default=False)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by_scan_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    reopened_count: Mapped[int] = mapped_column(default=0)
    accepted_until: Mapped[datetime | None] = mapped_column(default=None)
    triage_reason: Mapped[str | None] = mapped_column(sa.String(1000), default=None)
    triaged_by: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    triaged_at: Mapped[datetime | None] = mapped_column(default=None)
    sla_due_at: Mapped[datetime] = mapped_column()
    #: Set once, by the worker that claims the breach alert (never sent twice).
    sla_alerted_at: Mapped[datetime | None] = mapped_column(default=None)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


#: One row per (finding, scan that reported it), with the line it was at in that scan.
security_finding_sightings = sa.Table(
    "security_finding_sightings",
    Base.metadata,
    sa.Column(
        "finding_id",
        sa.Uuid,
        sa.ForeignKey("security_findings.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "scan_id",
        sa.Uuid,
        sa.ForeignKey("security_scans.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("line", sa.Integer, nullable=True),
    sa.Index("ix_security_finding_sightings_scan_id", "scan_id"),
)


class ScanSchedule(UUIDPk, Base):
    """A scan run on a cron schedule for one service of an environment."""

    __tablename__ = "security_scan_schedules"
    __table_args__ = (
        sa.UniqueConstraint("service_id", "type", name="uq_security_scan_schedules_service_type"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"))
    type: Mapped[str] = mapped_column(str_enum(*SCAN_TYPES, name="security_schedule_type"))
    cron: Mapped[str] = mapped_column(sa.String(100))
    is_active: Mapped[bool] = mapped_column(default=True)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GateOverride(UUIDPk, Base):
    """An admin's permission for the next deployment of one artifact past the security gate;
    used once (the deployment it let through is recorded)."""

    __tablename__ = "security_gate_overrides"

    artifact_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("artifacts.id"), index=True)
    reason: Mapped[str] = mapped_column(sa.String(1000))
    created_by: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_by_deployment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    used_at: Mapped[datetime | None] = mapped_column(default=None)
