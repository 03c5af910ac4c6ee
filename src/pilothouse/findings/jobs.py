"""Scan jobs and periodic work, as functions over the store (loops.py schedules them).

- `run_scan(id)`: a pending scan, claimed by lease, goes running -> completed | failed: the
  scanner runs (scanners.py), its report is imported into the scan (ingest.py), the duration
  and any error are recorded;
- `due_schedules(now)`: scans whose cron came due are recorded as pending (one per slot:
  `last_run_at` moves under a row lock);
- `sla_breaches(now)`: open findings past their SLA, each claimed once (`sla_alerted_at` set by
  exactly one worker's UPDATE), then one alert per environment through the alert channels;
- `expire(now)`: accepted risks past their expiry are open again.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from croniter import croniter

from pilothouse.access import system_actor
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.core.logging import get_logger
from pilothouse.errors import PilothouseError
from pilothouse.findings import ingest, scanners
from pilothouse.findings import service as findings
from pilothouse.findings.models import ScanSchedule, SecurityFinding, SecurityScan
from pilothouse.services.models import Service

log = get_logger("pilothouse.findings")
SCANNER = system_actor("scanner")
Send = Callable[[dict[str, Any]], Awaitable[Any]]


async def pending_scans(db: Database, now: datetime) -> list[uuid.UUID]:
    """Pending scans nobody holds (or whose holder's lease ran out), oldest first."""
    async with db.session(write=False) as session:
        rows = await session.scalars(
            sa.select(SecurityScan.id)
            .where(
                SecurityScan.status == "pending",
                sa.or_(SecurityScan.lease_owner.is_(None), SecurityScan.lease_expires_at < now),
            )
            .order_by(SecurityScan.created_at)
            .limit(10)
        )
        return list(rows)


async def _fail(db: Database, scan_id: uuid.UUID, message: str, started: float) -> None:
    async with db.session() as session:
        scan = await session.get(SecurityScan, scan_id, with_for_update=True)
        assert scan is not None
        scan.status, scan.completed_at = "failed", utcnow()
        scan.error_message = message[:4000]
        scan.summary = {
            **(scan.summary or {}),
            "scan_duration_ms": int((time.monotonic() - started) * 1000),
        }
        scan.lease_owner = scan.lease_expires_at = None


async def run_scan(
    db: Database,
    leases: Leases,
    scan_id: uuid.UUID,
    *,
    timeout: float,
    sla_days: Mapping[str, int],
) -> str:
    """Carry out one pending scan (claimed first; returns its final status, or "" if another
    worker has it)."""
    if not await leases.claim(SecurityScan, scan_id, SecurityScan.status == "pending"):
        return ""
    started = time.monotonic()
    async with leases.held(SecurityScan, scan_id):
        async with db.session() as session:
            scan = await session.get(SecurityScan, scan_id, with_for_update=True)
            assert scan is not None
            scan.status, scan.started_at = "running", utcnow()
            scan_type, source = scan.type, scan.source_path or ""
        with tempfile.TemporaryDirectory(prefix="pilothouse-scan-") as workdir:
            try:
                outcome = await scanners.run_scanner(scan_type, source, Path(workdir), timeout)
            except scanners.ScanFailed as exc:
                await _fail(db, scan_id, str(exc), started)
                return "failed"
            root = source if scan_type == "sast" else None
            try:
                async with db.session() as session:
                    scan = await session.get(SecurityScan, scan_id, with_for_update=True)
                    assert scan is not None
                    scan.tool = outcome.tool
                    await ingest.import_report(
                        session,
                        SCANNER,
                        scan,
                        outcome.report,
                        root=str(Path(root).resolve()) if root else None,
                        sla_days=sla_days,
                        duration_ms=int((time.monotonic() - started) * 1000),
                    )
                    scan.lease_owner = scan.lease_expires_at = None
            except PilothouseError as exc:
                await _fail(
                    db, scan_id, f"{outcome.tool} report not imported: {exc.message}", started
                )
                return "failed"
    return "completed"


async def due_schedules(db: Database, now: datetime) -> list[uuid.UUID]:
    """Record a pending scan for every active schedule whose cron came due since its last run."""
    created: list[uuid.UUID] = []
    async with db.session() as session:
        rows = (
            await session.scalars(
                sa.select(ScanSchedule).where(ScanSchedule.is_active).with_for_update()
            )
        ).all()
        for schedule in rows:
            since = schedule.last_run_at or schedule.created_at
            due = croniter(schedule.cron, since).get_next(datetime)
            if due > now:
                continue
            svc = await session.get(Service, schedule.service_id)
            if svc is None or svc.deleted_at is not None:
                continue
            scan = SecurityScan(
                owner_id=schedule.owner_id,
                environment_id=schedule.environment_id,
                service_id=svc.id,
                type=schedule.type,
                target=svc.name,
                source="schedule",
                source_path=source_of(svc, schedule.type),
                status="pending",
                started_at=now,
            )
            session.add(scan)
            await session.flush()
            schedule.last_run_at = now
            created.append(scan.id)
    return created


def source_of(service: Service, scan_type: str) -> str | None:
    """What `scan run` reads for a service: its working directory (`cwd` in its driver
    settings, set by an admin) for sast; `requirements.txt` in it for a dependency scan."""
    cwd = (service.driver_config or {}).get("cwd")
    if not cwd:
        return None
    return str(Path(str(cwd)) / "requirements.txt") if scan_type == "dependency" else str(cwd)


async def sla_breaches(db: Database, now: datetime, send: Send) -> int:
    """Alert once per open finding past its SLA (claimed by UPDATE ... WHERE sla_alerted_at IS
    NULL, so two workers never both send it); one message per environment and pass."""
    async with db.session(write=False) as session:
        due = list(
            await session.scalars(
                sa.select(SecurityFinding.id)
                .where(
                    SecurityFinding.status == "open",
                    SecurityFinding.sla_due_at <= now,
                    SecurityFinding.sla_alerted_at.is_(None),
                )
                .limit(500)
            )
        )
    if not due:
        return 0
    claimed: list[SecurityFinding] = []
    async with db.session() as session:
        for fid in due:
            result = await session.execute(
                sa.update(SecurityFinding)
                .where(SecurityFinding.id == fid, SecurityFinding.sla_alerted_at.is_(None))
                .values(sla_alerted_at=now)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                finding = await session.get(SecurityFinding, fid)
                assert finding is not None
                claimed.append(finding)
        names = await findings.environment_names(session, {f.environment_id for f in claimed})
    by_env: dict[str, list[SecurityFinding]] = defaultdict(list)
    for finding in claimed:
        by_env[names.get(finding.environment_id, "?")].append(finding)
    for env, items in by_env.items():
        listed = [
            {
                "id": str(f.id),
                "severity": f.severity,
                "rule_id": f.rule_id,
                "title": f.title,
                "location": f.location,
                "sla_due_at": f.sla_due_at.isoformat(),
            }
            for f in items[:50]
        ]
        first = items[0]
        text = (
            f"{len(items)} security finding(s) in {env} breached their SLA, e.g. "
            f"[{first.severity}] {first.rule_id} {first.title}"
            + (f" at {first.location}" if first.location else "")
        )
        await send(
            {"event": "finding_sla_breached", "text": text, "environment": env, "findings": listed}
        )
    return len(claimed)


async def expire(db: Database, now: datetime) -> int:
    """Accepted risks past their expiry are open again (audited)."""
    async with db.session() as session:
        return await findings.expire_acceptances(session, now, system_actor("findings"))
