"""Request and response bodies for scans, findings, triage, schedules and gate overrides."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ScanType = Literal["dependency", "sast", "container", "iac"]
ScanStatus = Literal["pending", "running", "completed", "failed"]
Severity = Literal["low", "medium", "high", "critical"]
FindingStatus = Literal["open", "resolved", "accepted_risk", "false_positive"]
ReportFormat = Literal["sarif", "bandit", "pip-audit", "semgrep"]

#: OpenAPI descriptions of the fields, by name (one place for the words every model shares).
DESCRIPTIONS = {
    "id": "Id (a unique prefix of at least 4 hex digits is accepted as a reference).",
    "type": "Scan type: dependency, sast, container or iac.",
    "environment": "Environment name.",
    "status": "Status.",
    "started_at": "When the scan started (UTC).",
    "completed_at": "When the scan completed or failed (UTC).",
    "summary": "Seed 002 summary: totals per severity, duration, compliance score.",
    "error_message": "Why the scan failed, or what it could not check.",
    "service_id": "The service scanned.",
    "environment_id": "The environment.",
    "target": "What was scanned (the service name by default): part of the dedup scope.",
    "tool": "The scanner (SARIF: the driver name).",
    "format": "The report format: sarif, bandit, pip-audit or semgrep.",
    "source": "import, run or schedule.",
    "scan_id": "The scan that first reported it.",
    "severity": "low, medium, high or critical.",
    "title": "Short title (the rule's).",
    "description": "What the scanner said about this occurrence.",
    "location": "path:line.",
    "cwe_id": "CWE, e.g. CWE-79.",
    "remediation": "How to fix it (the rule's help).",
    "resolved": "True when a scan resolved it (status resolved).",
    "resolved_at": "When a scan resolved it.",
    "created_at": "When it was recorded (UTC).",
    "rule_id": "The scanner's rule id.",
    "path": "File (or requirements:<package>), relative.",
    "line": "Line in the last scan that reported it.",
    "fingerprint": "Stable fingerprint within the scope (docs/findings.md).",
    "resolved_by_scan_id": "The scan that resolved it.",
    "reopened_count": "How many times it came back after being resolved.",
    "accepted_until": "When an accepted risk expires.",
    "triage_reason": "Why it was accepted or marked a false positive.",
    "triaged_by": "Who triaged it last.",
    "sla_due_at": "When an open finding breaches its severity's SLA.",
    "sla_breached": "Open and past its SLA (environment summary: how many).",
    "first_seen_at": "First reported.",
    "last_seen_at": "Last reported (the newest scan that reported it).",
    "scans_seen": "How many scans reported it.",
    "cron": "Cron expression (UTC).",
    "is_active": "Whether the schedule runs.",
    "last_run_at": "When the schedule last recorded a scan.",
    "artifact_id": "The artifact.",
    "reason": "Why (audited).",
    "created_by": "The admin who granted it.",
    "used_by_deployment_id": "The deployment it let through.",
    "used_at": "When it was used.",
    "open_findings": "Open findings.",
    "critical_findings": "Critical findings.",
    "high_findings": "High findings.",
    "medium_findings": "Medium findings.",
    "low_findings": "Low findings.",
    "total_findings": "Findings the scan reported.",
    "scan_duration_ms": "How long the scan (or import) took, in milliseconds.",
    "by_status": "Findings by status.",
    "compliance_score": "max(0, 100 - (25 x critical + 10 x high + 3 x medium + 1 x low)) over "
    "open findings (docs/findings.md).",
    "changes": "What the scan did: new, unchanged, rewritten, reopened, renamed, resolved.",
    "complete": "A complete scan resolves what it no longer reports.",
    "artifact": "Artifact version.",
    "scans": "Every scan that reported it, oldest first.",
    "service": "Service (name or id).",
    "version": "Artifact version.",
    "until": "When an accepted risk expires.",
    "sla_breached_count": "Open findings past their SLA.",
    "last_scan_at": "When the environment's last scan completed.",
}


def _describe(schema: dict[str, Any]) -> None:
    for name, prop in schema.get("properties", {}).items():
        if not prop.get("description") and name in DESCRIPTIONS:
            prop["description"] = DESCRIPTIONS[name]


class Described(BaseModel):
    """Fields without their own description take the shared one (DESCRIPTIONS)."""

    model_config = ConfigDict(json_schema_extra=_describe)


class ScanSummary(Described):
    """Seed 002 SecurityScanSummary."""

    total_findings: int
    critical_findings: int
    high_findings: int
    medium_findings: int
    low_findings: int
    scan_duration_ms: int
    compliance_score: float | None = Field(
        default=None,
        description="max(0, 100 - (25 x critical + 10 x high + 3 x medium + 1 x low)) over the "
        "scan's findings that are open (docs/findings.md).",
    )


class ScanRead(Described):
    id: uuid.UUID
    type: ScanType
    environment: str
    status: ScanStatus
    started_at: datetime
    completed_at: datetime | None
    summary: ScanSummary | None
    error_message: str | None
    service_id: uuid.UUID | None
    artifact: str | None = Field(description="The artifact version the scan was of.")
    target: str
    tool: str | None
    format: str | None
    source: Literal["import", "run", "schedule"]
    complete: bool = Field(description="A complete scan resolves what it no longer reports.")
    changes: dict[str, int] | None = Field(
        description="What the scan did: new, unchanged, rewritten, reopened, renamed, resolved."
    )


class FindingRead(Described):
    id: uuid.UUID
    scan_id: uuid.UUID = Field(description="The scan that first reported it.")
    environment: str
    severity: Severity
    title: str
    description: str
    location: str | None
    cwe_id: str | None
    remediation: str | None
    resolved: bool
    resolved_at: datetime | None
    created_at: datetime
    status: FindingStatus
    type: ScanType
    tool: str
    rule_id: str
    path: str | None
    line: int | None
    fingerprint: str
    resolved_by_scan_id: uuid.UUID | None
    reopened_count: int
    accepted_until: datetime | None
    triage_reason: str | None
    triaged_by: str | None
    sla_due_at: datetime
    sla_breached: bool
    first_seen_at: datetime
    last_seen_at: datetime | None
    scans_seen: int


class FindingDetail(FindingRead):
    scans: list[uuid.UUID] = Field(description="Every scan that reported it, oldest first.")


class Triage(Described):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_describe)

    reason: str | None = Field(
        default=None,
        max_length=1000,
        description="Why (required to accept or mark false positive).",
    )
    until: datetime | None = Field(
        default=None, description="When an accepted risk expires (required to accept; <= 365 days)."
    )


class ScanRun(Described):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_describe)

    type: Literal["sast", "dependency"] = Field(
        description="sast runs bandit, dependency pip-audit."
    )
    service: str = Field(min_length=1, max_length=100, description="Service (name or id).")
    environment: str | None = Field(default=None, description="Environment, when ambiguous.")
    artifact: str | None = Field(default=None, max_length=100, description="Artifact version.")
    path: str | None = Field(
        default=None,
        max_length=1000,
        description="Source directory or requirements file on the pilothouse host (admin only); "
        "default: the service's cwd (or its requirements.txt).",
    )


class ScheduleCreate(Described):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_describe)

    type: Literal["sast", "dependency"]
    service: str = Field(min_length=1, max_length=100)
    environment: str | None = None
    cron: str = Field(min_length=1, max_length=100, description="Cron expression (UTC).")


class ScheduleRead(Described):
    id: uuid.UUID
    type: ScanType
    service_id: uuid.UUID
    environment_id: uuid.UUID
    cron: str
    is_active: bool
    last_run_at: datetime | None
    created_at: datetime


class OverrideCreate(Described):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_describe)

    service: str = Field(min_length=1, max_length=100, description="Service (name or id).")
    environment: str | None = Field(default=None, description="Environment, when ambiguous.")
    version: str = Field(min_length=1, max_length=100, description="Artifact version.")
    reason: str = Field(min_length=1, max_length=1000, description="Why (audited).")


class OverrideRead(Described):
    id: uuid.UUID
    artifact_id: uuid.UUID
    reason: str
    created_by: str
    created_at: datetime
    used_by_deployment_id: uuid.UUID | None
    used_at: datetime | None


class EnvironmentSummary(Described):
    environment: str
    open_findings: int
    critical_findings: int
    high_findings: int
    medium_findings: int
    low_findings: int
    by_status: dict[str, int]
    sla_breached: int
    compliance_score: float
    last_scan_at: datetime | None
