"""The dashboard's pages: `/` next to `/api/v1`, server-rendered with Jinja2, live with htmx.

Thin like the API routes: each view authenticates (session cookie), calls the capabilities'
service functions (or web/service.py for the grid), and renders. POSTs check the CSRF token.
Every page works without JavaScript; htmx only refreshes parts of it (status and replicas every
`web_poll_seconds`, logs over SSE).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse

from pilothouse.access import Principal, require
from pilothouse.audit import service as audit
from pilothouse.autoscaling import service as autoscaling
from pilothouse.backups import freshness
from pilothouse.backups import service as backups
from pilothouse.backups.storage import open_storage
from pilothouse.core.clock import utcnow
from pilothouse.deployments import pins
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import ACTIVE_STATUSES, Deployment
from pilothouse.deps import Keys, Session, get_db
from pilothouse.healthchecks import service as health
from pilothouse.healthchecks.spec import parse as parse_spec
from pilothouse.history import service as history
from pilothouse.replicas import service as replicas
from pilothouse.services import service as services
from pilothouse.variables import service as variables
from pilothouse.web import auth, present
from pilothouse.web import findings as findings_views
from pilothouse.web import service as dashboard
from pilothouse.web.auth import LoginRequired, Poster, Who
from pilothouse.web.render import HERE, Viewer, is_fragment, render, settings_of, templates
from pilothouse.web.sections import SERVICE_SECTIONS

router = APIRouter(include_in_schema=False)

TERMINAL = ("success", "failed", "rolled_back")
#: Days the service page's uptime chart covers.
UPTIME_DAYS = 30


# -- overview ------------------------------------------------------------------------------


@router.get("/")
async def overview(
    request: Request,
    session: Session,
    viewer: Who,
    env: str | None = Query(default=None, max_length=100),
    status: str | None = Query(default=None, max_length=20),
    q: str | None = Query(default=None, max_length=100),
    page: int = Query(default=1, ge=1, le=100_000),
    per_page: int = Query(default=50, ge=10, le=200),
) -> HTMLResponse:
    """Environments x services: status, release, replicas, uptime, incidents, last backup."""
    grid = await dashboard.overview(
        session,
        viewer.principal,
        environment=env or None,
        status=status if status in present.GRID_STATUSES else None,
        q=q or None,
        page=page,
        per_page=per_page,
    )
    filters = {"env": env or "", "status": status or "", "q": q or "", "per_page": per_page}
    name = "_grid.html" if is_fragment(request) else "overview.html"
    return render(request, name, {"grid": grid, "filters": filters})


# -- service -------------------------------------------------------------------------------


@router.get("/services/{ref}")
async def service_page(
    ref: str, request: Request, session: Session, viewer: Who, keys: Keys
) -> HTMLResponse:
    """Replicas, the timeline, health targets, uptime, variables (masked), and later sections."""
    actor = viewer.principal
    svc = await services.get_service(session, actor, ref)
    env_id = str(svc.environment_id)
    view = await health.health_of(session, actor, str(svc.id), include_all=False)
    running = await replicas.list_replicas(session, actor, str(svc.id))
    if is_fragment(request) and request.headers.get("hx-target") == "live":
        return render(
            request, "_service_live.html", {"svc": svc, "health": view, "replicas": running}
        )
    month = utcnow().strftime("%Y-%m")
    report, _, _ = await health.uptime_of(session, actor, str(svc.id), month)
    rows, _ = await deployments.list_deployments(
        session, actor, deployments.DeploymentFilter(service=str(svc.id)), limit=30
    )
    incidents = await health.list_incidents(session, actor, service=str(svc.id))
    windows = await health.list_maintenance(session, actor, str(svc.id))
    scaled = await autoscaling.list_events(session, actor, str(svc.id), limit=30)
    timeline = _timeline(rows, [i for i, _ in incidents], windows, scaled)
    vars_ = await variables.list_vars(session, actor, keys, env_id, service=str(svc.id))
    env = await _env_name(session, actor, env_id)
    public = await dashboard.is_public(session, svc.id)
    days = await dashboard.uptime_days(session, svc, UPTIME_DAYS)
    return render(
        request,
        "service.html",
        {
            "svc": svc,
            "env": env,
            "health": view,
            "replicas": running,
            "report": report,
            "timeline": timeline,
            "vars": vars_,
            "public": public,
            "uptime_days": days,
            "badges": present.badges(str(request.base_url), str(svc.id), env, svc.name)
            if parse_spec(svc.health_check).public_badge
            else [],
            "live_deployment": next((d for d in rows if d.status in ACTIVE_STATUSES), None),
            "sections": [
                {"template": s.template, **await s.load(session, actor, svc)}
                for s in SERVICE_SECTIONS
            ],
        },
    )


async def _env_name(session: Any, actor: Principal, env_id: str) -> str:
    from pilothouse.environments import service as environments

    return (await environments.get_environment(session, actor, env_id)).name


def _timeline(rows: Any, incidents: Any, windows: Any, scaled: Any) -> list[dict[str, Any]]:
    """Deployments, rollbacks, scaling events, incidents and maintenance on one time axis."""
    items: list[dict[str, Any]] = []
    for d in rows:
        items.append(
            {
                "at": d.created_at,
                "kind": d.event_type,
                "text": f"{d.event_type} {d.version}: {d.status}",
                "href": f"/deployments/{d.id}",
            }
        )
    for i in incidents:
        state = "open" if i.ended_at is None else f"closed {i.ended_at:%Y-%m-%d %H:%M}"
        items.append({"at": i.started_at, "kind": "incident", "text": f"incident ({state})"})
    for w in windows:
        items.append(
            {
                "at": w.starts_at,
                "kind": "maintenance",
                "text": f"maintenance until {w.ends_at:%Y-%m-%d %H:%M}",
            }
        )
    for e in scaled:
        failed = "" if e.success else f" (failed: {e.error_message})"
        items.append(
            {
                "at": e.timestamp,
                "kind": e.action,
                "text": f"{e.action.replace('_', ' ')} {e.instances_before} → "
                f"{e.instances_after}{failed}: {e.trigger_reason}",
                "href": "#scaling-h",
            }
        )
    return sorted(items, key=lambda item: item["at"], reverse=True)


@router.post("/services/{ref}/vars/reveal")
async def reveal_vars(
    ref: str,
    request: Request,
    viewer: Poster,
    keys: Keys,
    key: Annotated[str, Form(max_length=255)],
) -> HTMLResponse:
    """Reveal one secret (admin; audited, committed before the value is sent)."""
    actor = viewer.principal
    async with get_db(request).session(write=True) as session:
        svc = await services.get_service(session, actor, ref)
        found = await variables.reveal_var(
            session, actor, keys, str(svc.environment_id), key, service=str(svc.id)
        )
    name = "_revealed.html" if is_fragment(request) else "revealed.html"
    return render(request, name, {"var": found, "svc": svc})


@router.post("/services/{ref}/public")
async def set_public(
    ref: str, request: Request, viewer: Poster, public: Annotated[str, Form()] = "off"
) -> Response:
    """Opt the service's status page in or out of public view (operator)."""
    async with get_db(request).session(write=True) as session:
        svc = await dashboard.set_public(session, viewer.principal, ref, public == "on")
    return RedirectResponse(f"/services/{svc.id}", status_code=303)


@router.get("/services/{ref}/chart.json")
async def service_chart(ref: str, session: Session, viewer: Who) -> JSONResponse:
    """Hourly response time (avg, P50, P95) and uptime of the current month, for uPlot."""
    actor = viewer.principal
    svc = await services.get_service(session, actor, ref)
    env = await _env_name(session, actor, str(svc.environment_id))
    since = present.month_start(utcnow())
    return JSONResponse(await dashboard.response_chart(session, svc, env, since))


# -- deployments ---------------------------------------------------------------------------


async def _deployment(
    session: Any, viewer: Viewer, deployment_id: str, *, rollback: bool = False
) -> tuple[Principal, Deployment]:
    """The viewer's principal and the deployment (404 unless theirs to see); with `rollback`,
    403 unless they may roll it back."""
    actor = viewer.principal
    dep = await deployments.get_deployment(session, actor, deployment_id)
    if rollback:
        require(actor, "deploy", what="rollback")
    return actor, dep


@router.get("/deployments/{deployment_id}")
async def deployment_page(
    deployment_id: str, request: Request, session: Session, viewer: Who
) -> HTMLResponse:
    """Status history, logs (streamed while it runs), pinned config, rollback (operator or
    deployer)."""
    actor, dep = await _deployment(session, viewer, deployment_id)
    steps = await history.list_for(session, "deployment", dep.id)
    logs = await deployments.read_logs(session, actor, dep.id, limit=2000)
    svc = await services.get_service(session, actor, str(dep.service_id))
    pinned = await pins.pins_of(session, dep.id)
    if is_fragment(request) and request.headers.get("hx-target") == "dep-status":
        return render(request, "_dep_status.html", {"dep": dep, "steps": steps})
    return render(
        request,
        "deployment.html",
        {
            "dep": dep,
            "svc": svc,
            "steps": steps,
            "logs": logs,
            "pins": pinned,
            "running": dep.status not in TERMINAL,
            "last_seq": logs[-1].seq if logs else 0,
        },
    )


@router.get("/deployments/{deployment_id}/logs")
async def deployment_logs(
    deployment_id: str,
    request: Request,
    viewer: Who,
    after: int = Query(default=0, ge=0, le=2**62),
) -> EventSourceResponse:
    """New log lines as SSE `log` events (HTML rows), `status` when it changes, keep-alive pings.
    The session is checked again every `web_poll_seconds`: when it has ended (logout, expiry,
    the token revoked) the stream sends `end` and closes."""
    db = get_db(request)
    async with db.session(write=False) as session:
        actor, dep = await _deployment(session, viewer, deployment_id)
    resolved = dep.id
    log_row = templates.env.get_template("_log_line.html")
    secret = request.cookies.get(auth.COOKIE, "")
    recheck = settings_of(request).web_poll_seconds

    async def stream() -> AsyncIterator[dict[str, str]]:
        nonlocal actor
        last, last_status = after, None
        checked = time.monotonic()
        while True:
            if time.monotonic() - checked >= recheck:
                checked = time.monotonic()
                now_signed_in = await auth.still_signed_in(db, secret)
                if now_signed_in is None:
                    yield {"event": "end", "data": "session ended"}
                    return
                actor = now_signed_in
            async with db.session(write=False) as session:
                state = await deployments.progress(session, actor, resolved, after=last)
            for line in state.logs:
                last = line.seq
                yield {"event": "log", "data": log_row.render(line=line), "id": str(line.seq)}
            if state.deployment.status != last_status:
                last_status = state.deployment.status
                yield {"event": "status", "data": last_status}
            if state.deployment.status in TERMINAL and not state.logs:
                yield {"event": "end", "data": last_status}
                return
            await asyncio.sleep(0.25)

    return EventSourceResponse(
        stream(),
        ping=settings_of(request).web_sse_ping_seconds,
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/deployments/{deployment_id}/rollback")
async def rollback_confirm(
    deployment_id: str, request: Request, session: Session, viewer: Who
) -> HTMLResponse:
    """The confirmation step: what the rollback would do (operator or deployer)."""
    actor, dep = await _deployment(session, viewer, deployment_id, rollback=True)
    plan = await deployments.plan_rollback(session, actor, str(dep.service_id))
    return render(request, "rollback.html", {"dep": dep, "plan": plan})


@router.post("/deployments/{deployment_id}/rollback")
async def rollback(deployment_id: str, request: Request, viewer: Poster) -> Response:
    """Roll the deployment's service back to the release before (operator or deployer;
    confirmed)."""
    async with get_db(request).session(write=True) as session:
        actor, dep = await _deployment(session, viewer, deployment_id, rollback=True)
        created = await deployments.create_rollback(session, actor, str(dep.service_id))
        target = created.id
    return RedirectResponse(f"/deployments/{target}", status_code=303)


# -- backups, incidents, audit -------------------------------------------------------------


@router.get("/backups")
async def backups_page(request: Request, session: Session, viewer: Who) -> HTMLResponse:
    """Targets (schedule, freshness, verify, drill) and the newest backups."""
    actor = viewer.principal
    targets = await backups.list_targets(session, actor)
    grace = timedelta(minutes=settings_of(request).backup_freshness_grace_minutes)
    fresh = await freshness.of_targets(session, targets, utcnow(), grace)
    rows = await backups.list_backups(session, actor, limit=100)
    return render(
        request,
        "backups.html",
        {
            "targets": targets,
            "fresh": fresh,
            "backups": rows,
            "describe_age": freshness.describe_age,
        },
    )


@router.post("/backups/targets/{ref}/run")
async def queue_backup(ref: str, request: Request, viewer: Poster) -> Response:
    """Queue a manual backup of a target (operator); the worker runs it."""
    actor = viewer.principal
    require(actor, "run_backups")
    async with get_db(request).session(write=True) as session:
        target = await backups.get_target(session, actor, ref)
        storage = open_storage(target.storage, settings_of(request).data_dir)
        await backups.new_backup(
            session, target, storage, trigger="manual", actor=actor, reason="dashboard"
        )
    return RedirectResponse("/backups", status_code=303)


@router.get("/incidents")
async def incidents_page(
    request: Request, session: Session, viewer: Who, open_only: bool = False
) -> HTMLResponse:
    """Incidents, newest first (open ones first in the page's summary)."""
    rows = await health.list_incidents(session, viewer.principal, open_only=open_only)
    name = "_incidents.html" if is_fragment(request) else "incidents.html"
    return render(request, name, {"incidents": rows, "open_only": open_only})


@router.get("/audit")
async def audit_page(
    request: Request,
    session: Session,
    viewer: Who,
    entity_type: str | None = Query(default=None, max_length=50),
    entity_id: str | None = Query(default=None, max_length=100),
    before: int | None = Query(default=None, ge=0, le=2**62),
) -> HTMLResponse:
    """The audit trail (admin), filterable by record kind and id."""
    rows = await audit.list_entries(
        session,
        viewer.principal,
        entity_type=entity_type or None,
        entity_id=entity_id or None,
        limit=100,
        before=before,
    )
    filters = {"entity_type": entity_type or "", "entity_id": entity_id or ""}
    return render(request, "audit.html", {"entries": rows, "filters": filters})


# -- public status page --------------------------------------------------------------------


@router.get("/status/{environment}/{name}")
async def status_page(
    environment: str, name: str, request: Request, session: Session
) -> HTMLResponse:
    """A service's public status page (no login; only services that opted in)."""
    page = await dashboard.status_page(session, environment, name)
    return render(request, "status.html", {"page": page})


# -- mounting ------------------------------------------------------------------------------


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not path.startswith(
        ("/api/", "/badge/", "/metrics", "/healthz", "/readyz", "/openapi", "/.well-known/")
    )


def error_page(request: Request, status: int, message: str) -> Response | None:
    """The HTML answer to an error on a dashboard page; None for API paths (JSON as before)."""
    if not _wants_html(request):
        return None
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def install(app: FastAPI) -> None:
    """Mount the dashboard on the app: pages, static files, the login redirect."""
    app.include_router(auth.router)
    app.include_router(router)
    app.include_router(findings_views.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        url = f"/login?next={_quote(target)}"
        if request.headers.get("hx-request") == "true":
            return Response(status_code=401, headers={"HX-Redirect": url})
        if request.method != "GET":
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse(url, status_code=303)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/")
