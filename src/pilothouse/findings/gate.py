"""The deployment gate: a deployment to an environment of a gated type (production by default)
of an artifact with open findings of a gated severity (critical by default) fails at `pending`,
with every blocking finding named in its log, unless an admin granted an override for it.

Findings are bound to the artifacts whose scans reported them: an artifact's blocking findings
are those its latest completed scan of each scope (type, target, tool) reported, of a gated
severity, and not triaged away (accepted risk or false positive). A finding resolved by a
later scan of a newer artifact still blocks the old artifact: the old build still contains it.
An artifact never scanned is not blocked. Only `deploy` events are gated: a rollback, restart,
scale, stop or start returns to (or keeps) what already runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, system_actor
from pilothouse.artifacts import service as artifacts
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import Deployment
from pilothouse.environments.models import Environment
from pilothouse.errors import ValidationFailed
from pilothouse.findings.models import (
    GateOverride,
    SecurityFinding,
    SecurityScan,
    security_finding_sightings,
)
from pilothouse.findings.rules import RANK
from pilothouse.services import service as services

GATE = system_actor("security-gate")
IGNORED = ("accepted_risk", "false_positive")
MAX_MESSAGE = 3800


async def latest_scans(session: AsyncSession, artifact_id: uuid.UUID) -> list[uuid.UUID]:
    """The newest completed scan of each scope for an artifact."""
    rows = await session.execute(
        sa.select(SecurityScan.id, SecurityScan.type, SecurityScan.target, SecurityScan.tool)
        .where(SecurityScan.artifact_id == artifact_id, SecurityScan.status == "completed")
        .order_by(SecurityScan.completed_at.desc(), SecurityScan.id)
    )
    newest: dict[tuple[str, str, str | None], uuid.UUID] = {}
    for scan_id, kind, target, tool in rows:
        newest.setdefault((kind, target, tool), scan_id)
    return list(newest.values())


async def blocking_findings(
    session: AsyncSession, artifact_id: uuid.UUID, severities: Sequence[str]
) -> list[SecurityFinding]:
    """The findings that block this artifact (module docstring), most severe first."""
    scans = await latest_scans(session, artifact_id)
    if not scans or not severities:
        return []
    sighted = sa.select(security_finding_sightings.c.finding_id).where(
        security_finding_sightings.c.scan_id.in_(scans)
    )
    rows = await session.scalars(
        sa.select(SecurityFinding).where(
            SecurityFinding.id.in_(sighted),
            SecurityFinding.severity.in_(list(severities)),
            SecurityFinding.status.not_in(IGNORED),
        )
    )
    return sorted(rows, key=lambda f: (-RANK[f.severity], f.rule_id, f.location or "", f.id))


def describe(finding: SecurityFinding) -> str:
    """One line naming a blocking finding."""
    where = f" at {finding.location}" if finding.location else ""
    return f"{str(finding.id)[:8]} [{finding.severity}] {finding.rule_id}: {finding.title}{where}"


def refusal_message(service: str, version: str, env: str, blocking: Sequence[str]) -> str:
    """The deployment's error message: every blocking finding, within the stored length."""
    head = (
        f"security gate: {service} {version} has {len(blocking)} open blocking finding(s) "
        f"for {env}: "
    )
    text = head + "; ".join(blocking)
    if len(text) <= MAX_MESSAGE:
        return text
    shown: list[str] = []
    for line in blocking:
        if len(head) + len("; ".join([*shown, line])) > MAX_MESSAGE - 80:
            break
        shown.append(line)
    rest = len(blocking) - len(shown)
    return head + "; ".join(shown) + f"; and {rest} more (every one is in the deployment log)"


async def grant_override(
    session: AsyncSession,
    actor: Principal,
    *,
    service: str,
    version: str,
    reason: str,
    environment: str | None = None,
) -> GateOverride:
    """An admin lets the next deployment of this artifact past the gate (once); audited."""
    require(actor, "override_gate")
    if not reason.strip():
        raise ValidationFailed("reason", "is required to override the security gate")
    svc = await services.get_service(session, actor, service, environment=environment)
    art = await artifacts.get_by_version(session, actor, svc.id, version)
    override = GateOverride(
        artifact_id=art.id, reason=reason.strip()[:1000], created_by=actor.name, created_at=utcnow()
    )
    session.add(override)
    await session.flush()
    audit.record(
        session,
        actor,
        "security_gate.override",
        "artifact",
        art.id,
        {"service": svc.name, "version": art.version, "reason": override.reason},
    )
    return override


async def _take_override(session: AsyncSession, deployment: Deployment) -> GateOverride | None:
    override = await session.scalar(
        sa.select(GateOverride)
        .where(
            GateOverride.artifact_id == deployment.artifact_id,
            GateOverride.used_by_deployment_id.is_(None),
        )
        .order_by(GateOverride.created_at)
        .limit(1)
        .with_for_update()
    )
    if override is None:
        return None
    override.used_by_deployment_id, override.used_at = deployment.id, utcnow()
    audit.record(
        session,
        GATE,
        "security_gate.override_used",
        "deployment",
        deployment.id,
        {
            "override": str(override.id),
            "granted_by": override.created_by,
            "reason": override.reason,
        },
    )
    return override


async def evaluate(
    session: AsyncSession,
    deployment: Deployment,
    *,
    severities: Sequence[str],
    environment_types: Sequence[str],
) -> tuple[str, list[str]] | None:
    """The gate's verdict on a pending deployment: None to go on, or (reason, lines)."""
    if deployment.event_type != "deploy" or deployment.artifact_id is None or not severities:
        return None
    env = await session.get(Environment, deployment.environment_id)
    if env is None or env.type not in environment_types:
        return None
    blocking = await blocking_findings(session, deployment.artifact_id, severities)
    if not blocking:
        return None
    lines = [f"blocking finding {describe(f)}" for f in blocking]
    override = await _take_override(session, deployment)
    if override is not None:
        await deployments.write_logs(
            session,
            deployment.id,
            [
                {
                    "message": f"security gate overridden by {override.created_by}: "
                    f"{override.reason} ({len(blocking)} blocking finding(s))",
                    "level": "warn",
                }
            ],
        )
        return None
    svc = await services.get_service(session, GATE, str(deployment.service_id))
    reason = refusal_message(
        svc.name, deployment.version, env.name, [describe(f) for f in blocking]
    )
    return reason, lines


def check(
    db: Database, severities: Sequence[str], environment_types: Sequence[str]
) -> Callable[[Deployment], Awaitable[tuple[str, list[str]] | None]]:
    """The release engine's pre-start check (registered in findings/loops.py)."""

    async def gate(deployment: Deployment) -> tuple[str, list[str]] | None:
        async with db.session() as session:
            return await evaluate(
                session, deployment, severities=severities, environment_types=environment_types
            )

    return gate
