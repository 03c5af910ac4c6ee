"""Reimport of the very report the scope's last scan imported (same bytes, same format): the
findings are exactly that scan's, so the import is done in set-based SQL without reading the
file again: the last scan's sightings copied to the new scan, those of its findings resolved
since reopened, and (for a complete scan) the scope's other open or accepted findings resolved.
No finding row is rewritten unless its status changes. Any scan in between (another report)
breaks the identity, and the full import runs.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.findings.deduplicate import RESOLVABLE
from pilothouse.findings.models import SecurityFinding, SecurityScan, security_finding_sightings

SIGHTINGS = security_finding_sightings


def digest(report: Path) -> str:
    """sha256 of the report's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with report.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


async def previous_same(session: AsyncSession, scan: SecurityScan, sha: str) -> uuid.UUID | None:
    """The scope's last completed scan, if it imported these very bytes (else None)."""
    last = await session.scalar(
        sa.select(SecurityScan)
        .where(
            SecurityScan.environment_id == scan.environment_id,
            SecurityScan.type == scan.type,
            SecurityScan.target == scan.target,
            SecurityScan.tool == scan.tool,
            SecurityScan.status == "completed",
            SecurityScan.id != scan.id,
        )
        .order_by(SecurityScan.completed_at.desc())
        .limit(1)
    )
    if last is None or last.report_sha256 != sha or last.format != scan.format:
        return None
    return last.id


async def replay(
    session: AsyncSession, scan: SecurityScan, previous: uuid.UUID, scope: str, now: Any
) -> tuple[Counter[str], Counter[str], dict[str, int]]:
    """Carry the previous scan's findings over to `scan`; (counts, open counts, changes)."""
    await session.execute(
        sa.insert(SIGHTINGS).from_select(
            ["finding_id", "scan_id", "line"],
            sa.select(SIGHTINGS.c.finding_id, sa.literal(scan.id, sa.Uuid), SIGHTINGS.c.line).where(
                SIGHTINGS.c.scan_id == previous
            ),
        )
    )
    seen = sa.select(SIGHTINGS.c.finding_id).where(SIGHTINGS.c.scan_id == scan.id)
    reopened = await session.execute(
        sa.update(SecurityFinding)
        .where(SecurityFinding.id.in_(seen), SecurityFinding.status == "resolved")
        .values(
            status="open",
            resolved=False,
            resolved_at=None,
            resolved_by_scan_id=None,
            reopened_count=SecurityFinding.reopened_count + 1,
        )
        .execution_options(synchronize_session=False)
    )
    resolved = 0
    if scan.complete:
        result = await session.execute(
            sa.update(SecurityFinding)
            .where(
                SecurityFinding.scope_key == scope,
                SecurityFinding.status.in_(RESOLVABLE),
                SecurityFinding.id.not_in(seen),
            )
            .values(status="resolved", resolved=True, resolved_at=now, resolved_by_scan_id=scan.id)
            .execution_options(synchronize_session=False)
        )
        resolved = result.rowcount  # type: ignore[attr-defined]
    rows = await session.execute(
        sa.select(SecurityFinding.severity, SecurityFinding.status, sa.func.count())
        .where(SecurityFinding.id.in_(seen))
        .group_by(SecurityFinding.severity, SecurityFinding.status)
    )
    counts: Counter[str] = Counter()
    open_counts: Counter[str] = Counter()
    for severity, status, count in rows:
        counts[severity] += count
        if status == "open":
            open_counts[severity] += count
    again = reopened.rowcount  # type: ignore[attr-defined]
    total = sum(counts.values())
    changes = {
        "new": 0,
        "unchanged": total - again,
        "rewritten": again,
        "reopened": again,
        "renamed": 0,
        "resolved": resolved,
    }
    return counts, open_counts, changes
