"""The dashboard's findings: the findings page, the service's findings by page, triage buttons.

Thin like the other views: they call the findings capability's service functions (so its roles,
isolation, transition table and audit apply) and render. A triage button posts the action with
the session's CSRF token; htmx swaps the finding's row in place, and without JavaScript the form
redirects back to where it was pressed.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pilothouse.core.clock import utcnow
from pilothouse.deps import Session, get_db
from pilothouse.errors import PilothouseError, ValidationFailed
from pilothouse.findings import service as findings
from pilothouse.findings.rules import FINDING_STATUSES, SEVERITIES
from pilothouse.services import service as services
from pilothouse.web import present
from pilothouse.web.auth import Poster, Who, safe_next
from pilothouse.web.render import is_fragment, render
from pilothouse.web.sections import running_findings

router = APIRouter(include_in_schema=False)

PER_PAGE = 50


@router.get("/findings")
async def findings_page(
    request: Request,
    session: Session,
    viewer: Who,
    severity: str | None = Query(default=None, max_length=20),
    status: str | None = Query(default="open", max_length=20),
    env: str | None = Query(default=None, max_length=100),
    page: int = Query(default=1, ge=1, le=100_000),
) -> HTMLResponse:
    """Findings the viewer may see (open ones unless asked), most severe first, by page, with
    their SLA due date and a breached marker; filters as the API's (severity, status, env);
    triage buttons for operators."""
    severities = (severity,) if severity in SEVERITIES else ()
    statuses = (status,) if status in FINDING_STATUSES else ()
    rows = list(
        await findings.list_findings(
            session,
            viewer.principal,
            findings.FindingFilter(environment=env or None, severity=severities, status=statuses),
            limit=PER_PAGE + 1,
            offset=(page - 1) * PER_PAGE,
        )
    )
    more = len(rows) > PER_PAGE
    rows = rows[:PER_PAGE]
    names = await findings.environment_names(session, {f.environment_id for f in rows})
    filters = {
        "severity": severities[0] if severities else "",
        "status": statuses[0] if statuses else "any",
        "env": env or "",
    }
    query = urlencode(filters)
    return render(
        request,
        "findings.html",
        {
            "rows": rows,
            "env_names": names,
            "now": utcnow(),
            "filters": filters,
            "query": query,
            "page": page,
            "more": more,
            "severities": list(reversed(SEVERITIES)),
            "statuses": FINDING_STATUSES,
            "back": f"/findings?{query}&page={page}",
        },
    )


@router.get("/services/{ref}/findings")
async def service_findings(
    ref: str,
    request: Request,
    session: Session,
    viewer: Who,
    severity: str | None = Query(default=None, max_length=20),
    page: int = Query(default=1, ge=1, le=100_000),
) -> HTMLResponse:
    """The findings of the service's running artifact, one page of them (every one reachable),
    optionally one severity; the service page shows the first page of the same section."""
    svc = await services.get_service(session, viewer.principal, ref)
    section = await running_findings(
        session,
        viewer.principal,
        svc,
        severity=severity if severity in SEVERITIES else None,
        page=page,
    )
    name = "_section_findings.html" if is_fragment(request) else "service_findings.html"
    return render(request, name, {"svc": svc, "section": section})


@router.post("/findings/{ref}/triage")
async def triage_finding(
    ref: str,
    request: Request,
    viewer: Poster,
    action: Annotated[str, Form(max_length=20)],
    reason: Annotated[str, Form(max_length=1000)] = "",
    until: Annotated[str, Form(max_length=20)] = "",
    view: Annotated[str, Form(max_length=10)] = "page",
    back: Annotated[str, Form(max_length=2000)] = "/findings",
) -> Response:
    """Accept a risk (reason, until), mark a false positive (reason) or reopen: the findings
    capability's triage (operator; 403 for a viewer, 404 for a finding not theirs to see;
    audited as the API's). htmx gets the row back (with the refusal, 409 or 422, in it)."""
    fragment = is_fragment(request)
    error: PilothouseError | None = None
    async with get_db(request).session(write=True) as session:
        try:
            expires = present.until_of(until)
        except ValueError:
            error = ValidationFailed("until", "must be a date (YYYY-MM-DD)")
            expires = None
        if error is None:
            try:
                await findings.triage(
                    session, viewer.principal, ref, action, reason=reason or None, until=expires
                )
            except PilothouseError as exc:
                if not fragment or exc.status not in (409, 422):
                    raise
                error = exc
        finding = await findings.get_finding(session, viewer.principal, ref)
        names = await findings.environment_names(session, {finding.environment_id})
    if error is not None and not fragment:
        raise error
    if not fragment:
        return RedirectResponse(safe_next(back), status_code=303)
    context: dict[str, Any] = {
        "f": finding,
        "now": utcnow(),
        "with_env": view == "page",
        "env_names": names,
        "back": safe_next(back),
        "error": error.message if error is not None else None,
    }
    return render(
        request, "_finding_row.html", context, status=error.status if error is not None else 200
    )
