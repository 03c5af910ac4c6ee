"""Request and response bodies for scans, findings, triage, schedules and gate overrides."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ScanType = Literal["dependency", "sast", "container", "iac"]
ScanStatus = Literal["pending", "running", "completed", "failed"]
Severity = Literal["low", "medium", "high", "critical"]
FindingStatus = Literal["open", "resolved", "accepted_risk", "false_positive"]
ReportFormat = Literal["sarif", "bandit", "pip-audit", "semgrep"]


class ScanSummary(BaseModel):
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


class ScanRead(BaseModel):
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


class FindingRead(BaseModel):
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


class Triage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        default=None,
        max_length=1000,
        description="Why (required to accept or mark false positive).",
    )
    until: datetime | None = Field(
        default=None, description="When an accepted risk expires (required to accept; <= 365 days)."
    )


class ScanRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["sast", "dependency"]
    service: str = Field(min_length=1, max_length=100)
    environment: str | None = None
    cron: str = Field(min_length=1, max_length=100, description="Cron expression (UTC).")


class ScheduleRead(BaseModel):
    id: uuid.UUID
    type: ScanType
    service_id: uuid.UUID
    environment_id: uuid.UUID
    cron: str
    is_active: bool
    last_run_at: datetime | None
    created_at: datetime


class OverrideCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str = Field(min_length=1, max_length=100, description="Service (name or id).")
    environment: str | None = Field(default=None, description="Environment, when ambiguous.")
    version: str = Field(min_length=1, max_length=100, description="Artifact version.")
    reason: str = Field(min_length=1, max_length=1000, description="Why (audited).")


class OverrideRead(BaseModel):
    id: uuid.UUID
    artifact_id: uuid.UUID
    reason: str
    created_by: str
    created_at: datetime
    used_by_deployment_id: uuid.UUID | None
    used_at: datetime | None


class EnvironmentSummary(BaseModel):
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
