"""/api/v1/scans and /api/v1/findings: import and run scans, list and triage findings, summaries,
SARIF export, scan schedules, security gate overrides."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.deps import Caller, Session, get_db
from pilothouse.errors import ValidationFailed
from pilothouse.findings import export, formats, gate, ingest, scheduling
from pilothouse.findings import service as findings
from pilothouse.findings.models import SecurityFinding, SecurityScan
from pilothouse.findings.schemas import (
    EnvironmentSummary,
    FindingDetail,
    FindingRead,
    FindingStatus,
    OverrideCreate,
    OverrideRead,
    ReportFormat,
    ScanRead,
    ScanRun,
    ScanStatus,
    ScanSummary,
    ScanType,
    ScheduleCreate,
    ScheduleRead,
    Severity,
    Triage,
)

router = APIRouter(tags=["findings"])
CHUNK = 1 << 20


async def scan_reads(session: AsyncSession, scans: list[SecurityScan]) -> list[ScanRead]:
    envs = await findings.environment_names(session, {s.environment_id for s in scans})
    arts = await findings.artifact_versions(
        session, {s.artifact_id for s in scans if s.artifact_id}
    )
    return [
        ScanRead(
            id=s.id,
            type=s.type,
            environment=envs.get(s.environment_id, "?"),
            status=s.status,
            started_at=s.started_at,
            completed_at=s.completed_at,
            summary=ScanSummary.model_validate(s.summary)
            if s.summary and "total_findings" in s.summary
            else None,
            error_message=s.error_message,
            service_id=s.service_id,
            artifact=arts.get(s.artifact_id) if s.artifact_id else None,
            target=s.target,
            tool=s.tool,
            format=s.format,
            source=s.source,
            complete=s.complete,
            changes=s.changes,
        )
        for s in scans
    ]


async def finding_reads(session: AsyncSession, rows: list[SecurityFinding]) -> list[FindingRead]:
    envs = await findings.environment_names(session, {f.environment_id for f in rows})
    seen = await findings.seen(session, [f.id for f in rows])
    now = datetime.now(tz=rows[0].sla_due_at.tzinfo) if rows else None
    out = []
    for f in rows:
        s = seen.get(f.id)
        data: dict[str, Any] = {
            c: getattr(f, c)
            for c in FindingRead.model_fields
            if c not in ("environment", "sla_breached", "last_seen_at", "scans_seen")
        }
        out.append(
            FindingRead(
                **data,
                environment=envs.get(f.environment_id, "?"),
                sla_breached=f.status == "open" and now is not None and f.sla_due_at < now,
                last_seen_at=s.last_seen_at if s else None,
                scans_seen=s.scans_seen if s else 0,
            )
        )
    return out


@router.post(
    "/scans/import",
    response_model=ScanRead,
    status_code=201,
    summary="Import a scan report (SARIF 2.1.0, bandit, pip-audit or semgrep JSON) as the body",
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": {"type": "object"}}},
            "required": True,
        }
    },
)
async def import_scan(
    request: Request,
    caller: Caller,
    environment: str = Query(min_length=1, description="Environment (name or id)."),
    service: str | None = Query(default=None, description="Service the report is about."),
    artifact: str | None = Query(default=None, description="Artifact version scanned."),
    target: str | None = Query(
        default=None, max_length=200, description="What was scanned (default: the service)."
    ),
    type: ScanType | None = Query(
        default=None, description="Scan type (default: dependency for pip-audit, else sast)."
    ),
    format: ReportFormat | None = Query(default=None, description="Report format (detected)."),
    partial: bool = Query(
        default=False, description="A partial scan resolves nothing it does not report."
    ),
) -> ScanRead:
    db = get_db(request)
    settings = request.app.state.settings
    with tempfile.TemporaryDirectory(prefix="pilothouse-report-") as folder:
        report = Path(folder) / "report.json"
        size = 0
        with report.open("wb") as out:  # streamed to disk: a large report never sits in memory
            async for chunk in request.stream():
                size += len(chunk)
                out.write(chunk)
        if size == 0:
            raise ValidationFailed("body", "is empty: send the report as the request body")
        async with db.session() as session:
            where = await ingest.resolve_target(
                session, caller, environment=environment, service=service,
                artifact=artifact, target=target,
            )  # fmt: skip
            scan_type = type
            if scan_type is None:
                with report.open("rb") as stream:
                    try:
                        detected = format or formats.detect(stream)
                    except formats.ReportError as exc:
                        raise ValidationFailed(f"report {exc.where}", exc.rule) from None
                scan_type = "dependency" if detected == "pip-audit" else "sast"
            scan = await ingest.create_scan(
                session, caller, where, scan_type=scan_type, source="import",
                complete=not partial, status="running",
            )  # fmt: skip
            await ingest.import_report(
                session, caller, scan, report, fmt=format, sla_days=settings.findings_sla_days
            )
            return (await scan_reads(session, [scan]))[0]


@router.post("/scans/run", response_model=ScanRead, status_code=202, summary="Run a scan (worker)")
async def run_scan(body: ScanRun, session: Session, caller: Caller) -> ScanRead:
    scan = await scheduling.request_run(
        session, caller, scan_type=body.type, service=body.service,
        environment=body.environment, artifact=body.artifact, path=body.path,
    )  # fmt: skip
    return (await scan_reads(session, [scan]))[0]


@router.get("/scans", response_model=list[ScanRead], summary="List scans, newest first")
async def list_scans(
    session: Session,
    caller: Caller,
    environment: str | None = Query(default=None, description="Environment (name or id)."),
    type: ScanType | None = Query(default=None, description="Scan type."),
    status: ScanStatus | None = Query(default=None, description="Scan status."),
    limit: int = Query(default=50, ge=1, le=500),
) -> list[ScanRead]:
    rows = await findings.list_scans(
        session, caller, findings.ScanFilter(environment, type, status), limit=limit
    )
    return await scan_reads(session, list(rows))


@router.get("/scans/{scan_id}", response_model=ScanRead, summary="Show a scan and its summary")
async def get_scan(
    session: Session,
    caller: Caller,
    scan_id: Annotated[str, PathParam(description="Id or prefix.")],
) -> ScanRead:
    return (await scan_reads(session, [await findings.get_scan(session, caller, scan_id)]))[0]


@router.get(
    "/scans/{scan_id}/sarif",
    summary="SARIF 2.1.0 export of the findings a scan reported",
    response_model=dict[str, Any],
)
async def scan_sarif(
    session: Session,
    caller: Caller,
    scan_id: Annotated[str, PathParam(description="Id or prefix.")],
) -> dict[str, Any]:
    scan = await findings.get_scan(session, caller, scan_id)
    rows = await findings.list_findings(
        session, caller, findings.FindingFilter(scan=str(scan.id)), limit=100_000
    )
    return export.to_sarif(rows)


@router.get("/findings", response_model=list[FindingRead], summary="List findings")
async def list_findings(
    session: Session,
    caller: Caller,
    environment: str | None = Query(default=None, description="Environment (name or id)."),
    severity: list[Severity] = Query(default=[], description="Severity (repeat)."),
    status: list[FindingStatus] = Query(default=[], description="Status (repeat)."),
    artifact: str | None = Query(default=None, description="Seen in a scan of this version."),
    scan: str | None = Query(default=None, description="Reported by this scan."),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(
        default=0,
        ge=0,
        le=2**31 - 1,
        description="Findings to skip (a store integer: at most 2,147,483,647).",
    ),
) -> list[FindingRead]:
    filters = findings.FindingFilter(
        environment=environment,
        severity=tuple(severity),
        status=tuple(status),
        artifact=artifact,
        scan=scan,
    )
    rows = await findings.list_findings(session, caller, filters, limit=limit, offset=offset)
    return await finding_reads(session, list(rows))


@router.get(
    "/findings/export",
    response_model=dict[str, Any],
    summary="SARIF 2.1.0 export of the open findings of an environment",
)
async def export_findings(
    session: Session,
    caller: Caller,
    environment: str = Query(min_length=1, description="Environment (name or id)."),
) -> dict[str, Any]:
    rows = await findings.list_findings(
        session,
        caller,
        findings.FindingFilter(environment=environment, status=("open",)),
        limit=100_000,
    )
    return export.to_sarif(rows)


@router.get(
    "/findings/summary",
    response_model=EnvironmentSummary,
    summary="Open findings of an environment by severity, SLA breaches, compliance score",
)
async def environment_summary(
    session: Session,
    caller: Caller,
    environment: str = Query(min_length=1, description="Environment (name or id)."),
) -> EnvironmentSummary:
    return EnvironmentSummary.model_validate(
        await findings.environment_summary(session, caller, environment)
    )


@router.get("/findings/{finding_id}", response_model=FindingDetail, summary="Show a finding")
async def get_finding(
    session: Session,
    caller: Caller,
    finding_id: Annotated[str, PathParam(description="Id or prefix.")],
) -> FindingDetail:
    finding = await findings.get_finding(session, caller, finding_id)
    (read,) = await finding_reads(session, [finding])
    return FindingDetail(**read.model_dump(), scans=await findings.scans_of(session, finding.id))


@router.post(
    "/findings/{finding_id}/{action}",
    response_model=FindingRead,
    summary="Triage a finding: accept (reason, until), false-positive (reason) or reopen",
)
async def triage(
    body: Triage,
    session: Session,
    caller: Caller,
    finding_id: Annotated[str, PathParam(description="Id or prefix.")],
    action: Annotated[str, PathParam(pattern="^(accept|false-positive|reopen)$")],
) -> FindingRead:
    finding = await findings.triage(
        session, caller, finding_id, action, reason=body.reason, until=body.until
    )
    return (await finding_reads(session, [finding]))[0]


@router.post(
    "/scan-schedules", response_model=ScheduleRead, status_code=201, summary="Schedule scans"
)
async def create_schedule(body: ScheduleCreate, session: Session, caller: Caller) -> ScheduleRead:
    schedule = await scheduling.create_schedule(
        session, caller, scan_type=body.type, service=body.service, cron=body.cron,
        environment=body.environment,
    )  # fmt: skip
    return ScheduleRead.model_validate(schedule, from_attributes=True)


@router.get("/scan-schedules", response_model=list[ScheduleRead], summary="List scan schedules")
async def list_schedules(session: Session, caller: Caller) -> list[ScheduleRead]:
    rows = await scheduling.list_schedules(session, caller)
    return [ScheduleRead.model_validate(r, from_attributes=True) for r in rows]


@router.post(
    "/gate-overrides",
    response_model=OverrideRead,
    status_code=201,
    summary="Let the next deployment of an artifact past the security gate (admin, audited)",
)
async def override_gate(body: OverrideCreate, session: Session, caller: Caller) -> OverrideRead:
    override = await gate.grant_override(
        session, caller, service=body.service, version=body.version, reason=body.reason,
        environment=body.environment,
    )  # fmt: skip
    return OverrideRead.model_validate(override, from_attributes=True)
