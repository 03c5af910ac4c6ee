"""Rendering the dashboard's templates: the context every page gets, fragments for htmx."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from pilothouse import __version__
from pilothouse.access import Principal, may
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.web import present

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(present=present, version=__version__)


@dataclass
class Viewer:
    """The logged-in principal and the CSRF token of their session."""

    principal: Principal
    csrf: str


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def render(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    """A page (or, for an htmx request naming a fragment, just that fragment)."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    settings = settings_of(request)
    base = {
        "viewer": viewer,
        "may": (lambda action: viewer is not None and may(viewer.principal, action)),
        "now": utcnow(),
        "poll_ms": int(settings.web_poll_seconds * 1000),
    }
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def is_fragment(request: Request) -> bool:
    return request.headers.get("hx-request") == "true" and "hx-history-restore-request" not in (
        request.headers
    )
