"""Sections of the service page that come from other capabilities, and the hook that adds them.

A capability's section is a template and a loader: `load(session, principal, service)` returns
the template's context, through the capability's own service functions (so the API's checks
apply). `SERVICE_SECTIONS` lists them in page order: scaling, domains and certificates, findings
of the running artifact.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.artifacts import service as artifacts
from pilothouse.autoscaling import rules
from pilothouse.autoscaling import service as autoscaling
from pilothouse.certificates import domains
from pilothouse.certificates import rules as cert_rules
from pilothouse.certificates import service as certificates
from pilothouse.certificates.models import Certificate
from pilothouse.core.clock import utcnow
from pilothouse.findings import gate
from pilothouse.findings import service as findings
from pilothouse.findings.models import SecurityFinding
from pilothouse.findings.rules import SEVERITIES
from pilothouse.services.models import Service
from pilothouse.web import present


@dataclass(frozen=True)
class Section:
    """A part of the service page: `template` is included with what `load` returns."""

    template: str
    load: Callable[[AsyncSession, Principal, Service], Awaitable[dict[str, Any]]]


async def _scaling(session: AsyncSession, actor: Principal, svc: Service) -> dict[str, Any]:
    """The service's scaling policy (if any) with its thresholds as the decisions word them
    ("80%", or a named metric's value), and its newest 20 scaling events."""
    policy = await autoscaling.policy_of(session, svc.id)
    events = await autoscaling.list_events(session, actor, str(svc.id), limit=20)
    shown = rules.thresholds(rules.Policy.of(policy)) if policy is not None else None
    return {"policy": policy, "thresholds": shown, "events": events}


async def _domains(session: AsyncSession, actor: Principal, svc: Service) -> dict[str, Any]:
    """The service's domains with their DNS status, and the certificate of each (tracked by
    id, else by name) with its whole days left; all through the capability's visibility."""
    mine = [d for d in await domains.list_domains(session, actor) if d.service_id == svc.id]
    certs = await certificates.list_certificates(session, actor) if mine else []
    by_id = {c.id: c for c in certs}
    by_name: dict[str, Certificate] = {}
    for tracked in certs:
        by_name.setdefault(tracked.domain, tracked)
    now = utcnow()
    rows = []
    for domain in mine:
        cert = by_id.get(domain.ssl_certificate_id) if domain.ssl_certificate_id else None
        cert = cert or by_name.get(domain.domain_name)
        left = None
        if cert is not None and cert.expires_at is not None:
            left = cert_rules.days_left(cert.expires_at, now)
        rows.append({"domain": domain, "cert": cert, "days_left": left})
    return {"domains": rows}


#: Finding statuses that still count for the artifact a scan reported them in (gate.IGNORED out).
PRESENT = ("open", "resolved")


#: Findings shown per page of the section.
PER_PAGE = 50


async def running_findings(
    session: AsyncSession,
    actor: Principal,
    svc: Service,
    *,
    severity: str | None = None,
    page: int = 1,
) -> dict[str, Any]:
    """Findings of the running artifact as the deploy gate sees them: those its newest scan of
    each scope reported (scans the actor may not see left out), less accepted risks and false
    positives, with counts by severity (of all of them) and one page of `PER_PAGE`, most
    severe first then oldest (of one severity, if given); counted and paged in the store, so
    no finding is out of reach however many a scan holds. A finding a later scan (of a newer
    build, same scope) no longer reported is `resolved` in the store but still in the running
    artifact, so it is listed."""
    artifact = await artifacts.get_deployed(session, svc.id)
    counts = {s: 0 for s in reversed(SEVERITIES)}
    rows: Sequence[SecurityFinding] = []
    pages = 1
    shown = 0
    if artifact is not None:
        scans = tuple(await gate.latest_scans(session, artifact.id))
        if scans:
            wanted = findings.FindingFilter(scans=scans, status=PRESENT)
            counts.update(await findings.count_by_severity(session, actor, wanted))
            shown = counts[severity] if severity is not None else sum(counts.values())
            pages = present.pages(shown, PER_PAGE)
            page = min(max(1, page), pages)
            if severity is not None:
                wanted = replace(wanted, severity=(severity,))
            rows = await findings.list_findings(
                session, actor, wanted, limit=PER_PAGE, offset=(page - 1) * PER_PAGE
            )
    return {
        "artifact": artifact,
        "findings": rows,
        "counts": counts,
        "total": sum(counts.values()),
        "shown": shown,
        "severity": severity,
        "page": min(max(1, page), pages),
        "pages": pages,
        "now": utcnow(),
    }


async def _findings(session: AsyncSession, actor: Principal, svc: Service) -> dict[str, Any]:
    """The first page of the running artifact's findings (`running_findings`)."""
    return await running_findings(session, actor, svc)


SERVICE_SECTIONS: list[Section] = [
    Section("_section_scaling.html", _scaling),
    Section("_section_domains.html", _domains),
    Section("_section_findings.html", _findings),
]
