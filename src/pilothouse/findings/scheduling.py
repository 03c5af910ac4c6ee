"""Asking for scans to run: one now (`scan run`) or on a cron schedule per service."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, visible
from pilothouse.audit import service as audit
from pilothouse.errors import ValidationFailed
from pilothouse.findings import ingest, scanners
from pilothouse.findings.jobs import source_of
from pilothouse.findings.models import ScanSchedule, SecurityScan
from pilothouse.services import service as services


async def request_run(
    session: AsyncSession,
    actor: Principal,
    *,
    scan_type: str,
    service: str,
    environment: str | None = None,
    artifact: str | None = None,
    path: str | None = None,
) -> SecurityScan:
    """Record a pending scan for the worker to run (operator; an explicit path: admin)."""
    require(actor, "import_scans")
    svc = await services.get_service(session, actor, service, environment=environment)
    if path is not None:
        # what is read on the host is the admin's to choose (the code lands in findings)
        require(actor, "define_commands", what="a scan path")
    source = path or source_of(svc, scan_type)
    if not source:
        raise ValidationFailed(
            "path", "is required: the service has no cwd in its driver settings to scan"
        )
    if not scanners.installed(scan_type):
        tool = scanners.TOOLS[scan_type][0]
        raise ValidationFailed(
            "type", f"{tool} is not installed (pip install 'pilothouse[scanners]')"
        )
    where = await ingest.resolve_target(
        session, actor, environment=str(svc.environment_id), service=str(svc.id),
        artifact=artifact, target=None,
    )  # fmt: skip
    scan = await ingest.create_scan(
        session, actor, where, scan_type=scan_type, source="run", tool=scanners.TOOLS[scan_type][0]
    )
    scan.source_path = source[:1000]
    return scan


async def create_schedule(
    session: AsyncSession,
    actor: Principal,
    *,
    scan_type: str,
    service: str,
    cron: str,
    environment: str | None = None,
) -> ScanSchedule:
    """A cron schedule of one scan type for one service (runs from its cwd); audited."""
    require(actor, "import_scans")
    if not croniter.is_valid(cron):
        raise ValidationFailed("cron", "must be a cron expression, e.g. '0 3 * * *'")
    svc = await services.get_service(session, actor, service, environment=environment)
    if not source_of(svc, scan_type):
        raise ValidationFailed("service", "has no cwd in its driver settings to scan")
    schedule = ScanSchedule(
        owner_id=actor.id,
        environment_id=svc.environment_id,
        service_id=svc.id,
        type=scan_type,
        cron=cron,
    )
    session.add(schedule)
    await session.flush()
    audit.record(
        session, actor, "scan_schedule.create", "scan_schedule", schedule.id,
        {"service": svc.name, "type": scan_type, "cron": cron},
    )  # fmt: skip
    return schedule


async def list_schedules(session: AsyncSession, actor: Principal) -> Sequence[ScanSchedule]:
    query = sa.select(ScanSchedule).where(
        visible(actor, ScanSchedule.owner_id, ScanSchedule.environment_id)
    )
    return (await session.scalars(query.order_by(ScanSchedule.created_at))).all()
