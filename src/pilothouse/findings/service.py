"""Scans and findings: read, list, triage (audited), summaries per scan and per environment,
SARIF export of the open findings of an environment."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, granted_environment_ids, require, visible
from pilothouse.artifacts.models import Artifact
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.db import one_by_ref
from pilothouse.core.statemachine import check_transition
from pilothouse.environments import service as environments
from pilothouse.environments.models import Environment
from pilothouse.errors import ValidationFailed
from pilothouse.findings import triage as triage_rules
from pilothouse.findings.models import SecurityFinding, SecurityScan, security_finding_sightings
from pilothouse.findings.rules import FINDING_STATUSES, SEVERITIES, compliance_score

SIGHTINGS = security_finding_sightings


def _scans_visible(actor: Principal) -> sa.ColumnElement[bool]:
    return visible(actor, SecurityScan.owner_id, SecurityScan.environment_id)


def _findings_visible(actor: Principal) -> sa.ColumnElement[bool]:
    if actor.is_admin:
        return sa.true()
    owned = sa.select(SecurityScan.id).where(SecurityScan.owner_id == actor.id)
    return sa.or_(
        SecurityFinding.scan_id.in_(owned),
        SecurityFinding.environment_id.in_(granted_environment_ids(actor)),
    )


async def get_scan(session: AsyncSession, actor: Principal, ref: str) -> SecurityScan:
    """A scan the actor can see, by id or unique id prefix."""
    query = sa.select(SecurityScan).where(_scans_visible(actor)).order_by(SecurityScan.id)
    found: SecurityScan = await one_by_ref(session, query, SecurityScan.id, ref, "scan")
    return found


@dataclass(frozen=True)
class ScanFilter:
    environment: str | None = None
    type: str | None = None
    status: str | None = None


async def list_scans(
    session: AsyncSession, actor: Principal, filters: ScanFilter, *, limit: int = 50
) -> Sequence[SecurityScan]:
    """Newest first."""
    query = sa.select(SecurityScan).where(_scans_visible(actor))
    if filters.environment:
        env = await environments.get_environment(session, actor, filters.environment)
        query = query.where(SecurityScan.environment_id == env.id)
    if filters.type:
        query = query.where(SecurityScan.type == filters.type)
    if filters.status:
        query = query.where(SecurityScan.status == filters.status)
    query = query.order_by(SecurityScan.started_at.desc(), SecurityScan.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def get_finding(session: AsyncSession, actor: Principal, ref: str) -> SecurityFinding:
    """A finding the actor can see, by id or unique id prefix."""
    query = sa.select(SecurityFinding).where(_findings_visible(actor)).order_by(SecurityFinding.id)
    found: SecurityFinding = await one_by_ref(session, query, SecurityFinding.id, ref, "finding")
    return found


@dataclass(frozen=True)
class FindingFilter:
    environment: str | None = None
    severity: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    artifact: str | None = None  # a version: findings seen in a scan of that artifact
    service: str | None = None
    scan: str | None = None
    #: Findings seen in any of these scans; those the actor may not see are left out (not 404).
    scans: tuple[uuid.UUID, ...] = ()


async def _matching(
    session: AsyncSession, actor: Principal, filters: FindingFilter
) -> sa.ColumnElement[bool]:
    """The condition on SecurityFinding for `filters` and what the actor may see."""
    for name, values, allowed in (
        ("severity", filters.severity, SEVERITIES),
        ("status", filters.status, FINDING_STATUSES),
    ):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValidationFailed(name, f"must be one of {', '.join(allowed)}")
    where: list[sa.ColumnElement[bool]] = [_findings_visible(actor)]
    if filters.severity:
        where.append(SecurityFinding.severity.in_(filters.severity))
    if filters.status:
        where.append(SecurityFinding.status.in_(filters.status))
    if filters.environment:
        env = await environments.get_environment(session, actor, filters.environment)
        where.append(SecurityFinding.environment_id == env.id)
    if filters.scan:
        scan = await get_scan(session, actor, filters.scan)
        where.append(
            SecurityFinding.id.in_(
                sa.select(SIGHTINGS.c.finding_id).where(SIGHTINGS.c.scan_id == scan.id)
            )
        )
    if filters.scans:
        seen_in = sa.select(SecurityScan.id).where(
            SecurityScan.id.in_(filters.scans), _scans_visible(actor)
        )
        where.append(
            SecurityFinding.id.in_(
                sa.select(SIGHTINGS.c.finding_id).where(SIGHTINGS.c.scan_id.in_(seen_in))
            )
        )
    if filters.artifact:
        scans = sa.select(SecurityScan.id).join(Artifact, Artifact.id == SecurityScan.artifact_id)
        scans = scans.where(Artifact.version == filters.artifact)
        where.append(
            SecurityFinding.id.in_(
                sa.select(SIGHTINGS.c.finding_id).where(SIGHTINGS.c.scan_id.in_(scans))
            )
        )
    return sa.and_(*where)


async def list_findings(
    session: AsyncSession,
    actor: Principal,
    filters: FindingFilter,
    *,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[SecurityFinding]:
    """Most severe first, then oldest first."""
    query = sa.select(SecurityFinding).where(await _matching(session, actor, filters))
    rank = sa.case({s: i for i, s in enumerate(SEVERITIES)}, value=SecurityFinding.severity)
    query = query.order_by(rank.desc(), SecurityFinding.first_seen_at, SecurityFinding.id)
    return (await session.scalars(query.limit(limit).offset(offset))).all()


async def count_by_severity(
    session: AsyncSession, actor: Principal, filters: FindingFilter
) -> dict[str, int]:
    """How many findings match `filters`, per severity (every severity, most severe last)."""
    counts = {s: 0 for s in SEVERITIES}
    rows = await session.execute(
        sa.select(SecurityFinding.severity, sa.func.count())
        .where(await _matching(session, actor, filters))
        .group_by(SecurityFinding.severity)
    )
    for severity, n in rows:
        counts[severity] = n
    return counts


@dataclass(frozen=True)
class Seen:
    first_seen_at: datetime
    last_seen_at: datetime | None
    scans_seen: int
    last_scan_id: uuid.UUID | None


async def seen(session: AsyncSession, finding_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Seen]:
    """First/last seen and how many scans reported each finding (from its sightings)."""
    if not finding_ids:
        return {}
    rows = await session.execute(
        sa.select(
            SIGHTINGS.c.finding_id,
            sa.func.count(),
            sa.func.max(SecurityScan.started_at),
        )
        .join(SecurityScan, SecurityScan.id == SIGHTINGS.c.scan_id)
        .where(SIGHTINGS.c.finding_id.in_(finding_ids))
        .group_by(SIGHTINGS.c.finding_id)
    )
    found = {fid: (count, last) for fid, count, last in rows}
    firsts = await session.execute(
        sa.select(SecurityFinding.id, SecurityFinding.first_seen_at).where(
            SecurityFinding.id.in_(finding_ids)
        )
    )
    out = {}
    for fid, first in firsts:
        count, last = found.get(fid, (0, None))
        out[fid] = Seen(first, last, count, None)
    return out


async def scans_of(session: AsyncSession, finding_id: uuid.UUID) -> list[uuid.UUID]:
    """The scans that reported a finding, oldest first."""
    rows = await session.scalars(
        sa.select(SIGHTINGS.c.scan_id)
        .join(SecurityScan, SecurityScan.id == SIGHTINGS.c.scan_id)
        .where(SIGHTINGS.c.finding_id == finding_id)
        .order_by(SecurityScan.started_at)
    )
    return list(rows)


async def triage(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    action: str,
    *,
    reason: str | None = None,
    until: datetime | None = None,
) -> SecurityFinding:
    """accept (reason and expiry), false-positive (reason) or reopen a finding; audited."""
    require(actor, "triage_findings")
    if action not in triage_rules.ACTIONS:
        raise ValidationFailed("action", f"must be one of {', '.join(triage_rules.ACTIONS)}")
    to = triage_rules.ACTIONS[action]
    finding = await get_finding(session, actor, ref)
    if to in ("accepted_risk", "false_positive") and not (reason and reason.strip()):
        raise ValidationFailed("reason", f"is required to mark a finding {to}")
    now = utcnow()
    if to == "accepted_risk":
        if until is None:
            raise ValidationFailed("until", "is required: an accepted risk expires")
        if until <= now:
            raise ValidationFailed("until", "must be in the future")
        if until > now + timedelta(days=triage_rules.MAX_ACCEPT_DAYS):
            raise ValidationFailed("until", f"must be within {triage_rules.MAX_ACCEPT_DAYS} days")
    check_transition(triage_rules.TABLE, "finding", finding.status, to)
    before = finding.status
    finding.status = to
    finding.resolved = False
    finding.resolved_at = None
    finding.resolved_by_scan_id = None
    finding.accepted_until = until if to == "accepted_risk" else None
    finding.triage_reason = (reason or "").strip()[:1000] or None
    finding.triaged_by, finding.triaged_at = actor.name, now
    if to == "open" and before == "resolved":
        finding.reopened_count += 1
    audit.record(
        session,
        actor,
        f"finding.{action}",
        "security_finding",
        finding.id,
        {
            "from": before,
            "to": to,
            "reason": finding.triage_reason,
            "until": until.isoformat() if until else None,
        },
    )
    return finding


async def expire_acceptances(session: AsyncSession, now: datetime, actor: Principal) -> int:
    """Accepted risks past their expiry are open again (audited, one row each)."""
    rows = (
        await session.scalars(
            sa.select(SecurityFinding)
            .where(SecurityFinding.status == "accepted_risk", SecurityFinding.accepted_until <= now)
            .limit(1000)
            .with_for_update()
        )
    ).all()
    for finding in rows:
        finding.status = "open"
        audit.record(
            session,
            actor,
            "finding.acceptance_expired",
            "security_finding",
            finding.id,
            {"from": "accepted_risk", "to": "open", "until": str(finding.accepted_until)},
        )
        finding.accepted_until = None
    return len(rows)


async def environment_summary(
    session: AsyncSession, actor: Principal, environment: str
) -> dict[str, Any]:
    """Open findings of an environment by severity, its compliance score, the last scan."""
    env = await environments.get_environment(session, actor, environment)
    rows = await session.execute(
        sa.select(SecurityFinding.severity, SecurityFinding.status, sa.func.count())
        .where(SecurityFinding.environment_id == env.id)
        .group_by(SecurityFinding.severity, SecurityFinding.status)
    )
    open_counts: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
    by_status: dict[str, int] = dict.fromkeys(FINDING_STATUSES, 0)
    for severity, status, count in rows:
        by_status[status] += count
        if status == "open":
            open_counts[severity] += count
    last = await session.scalar(
        sa.select(sa.func.max(SecurityScan.completed_at)).where(
            SecurityScan.environment_id == env.id, SecurityScan.status == "completed"
        )
    )
    breached = await session.scalar(
        sa.select(sa.func.count())
        .select_from(SecurityFinding)
        .where(
            SecurityFinding.environment_id == env.id,
            SecurityFinding.status == "open",
            SecurityFinding.sla_due_at < utcnow(),
        )
    )
    return {
        "environment": env.name,
        "open_findings": sum(open_counts.values()),
        **{f"{s}_findings": open_counts[s] for s in reversed(SEVERITIES)},
        "by_status": by_status,
        "sla_breached": breached or 0,
        "compliance_score": compliance_score(open_counts),
        "last_scan_at": last,
    }


async def environment_names(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(Environment.id, Environment.name).where(Environment.id.in_(ids))
    )
    return {key: value for key, value in rows}


async def artifact_versions(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(Artifact.id, Artifact.version).where(Artifact.id.in_(ids))
    )
    return {key: value for key, value in rows}
