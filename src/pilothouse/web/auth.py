"""Dashboard authentication: the login form, the session cookie, CSRF checks, logout.

Views depend on `Who` (a logged-in viewer) or, for POSTs, `Poster` (also checks the CSRF token).
Without a valid session a page redirects to /login and an htmx request gets `HX-Redirect`.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pilothouse.access import Principal
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.deps import get_db
from pilothouse.errors import Forbidden, Unauthorized
from pilothouse.web import sessions
from pilothouse.web.render import Viewer, render, settings_of

COOKIE = "ph_session"
LOGIN_COOKIE = "ph_login"
router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """No valid session: pages redirect to /login, htmx fragments ask the browser to."""


async def _viewer(request: Request) -> Viewer:
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise LoginRequired
    db = get_db(request)
    async with db.session(write=False) as session:
        try:
            principal, web = await sessions.principal_for(session, secret)
        except Unauthorized:
            raise LoginRequired from None
    if sessions.needs_touch(web):
        async with db.session(write=True) as session:
            await sessions.touch(session, web.id)
    viewer = Viewer(principal, sessions.csrf_token(secret))
    request.state.viewer = viewer
    return viewer


Who = Annotated[Viewer, Depends(_viewer)]


async def still_signed_in(db: Database, secret: str) -> Principal | None:
    """The principal behind a session cookie now, or None when the session has ended (logged
    out, expired, its token revoked or expired, its user deactivated): what a long-lived
    response (the SSE log stream) re-checks while it runs."""
    async with db.session(write=False) as session:
        try:
            principal, _ = await sessions.principal_for(session, secret)
        except Unauthorized:
            return None
    return principal


async def _csrf(request: Request, viewer: Who) -> Viewer:
    """POSTs must carry the session's CSRF token (form field `csrf` or header X-CSRF-Token)."""
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf")
        sent = value if isinstance(value, str) else None
    if sent is None or not sessions.same_token(sent, viewer.csrf):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page and retry")
    return viewer


Poster = Annotated[Viewer, Depends(_csrf)]


def secure(request: Request) -> bool:
    """Served over TLS (directly or behind a proxy saying so): the cookies get `Secure`."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


# -- login ---------------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """The login form: an API token, once; CSRF by a double-submitted random cookie."""
    nonce = uuid.uuid4().hex
    response = render(request, "login.html", {"nonce": nonce, "next": safe_next(next)})
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        secure=secure(request),
        samesite="strict",
        max_age=1800,
        path="/login",
    )
    return response


def safe_next(target: str) -> str:
    """Only a path on this site (no scheme, no //host) may follow a login."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Exchange a token for a session cookie (HttpOnly, SameSite=Strict, Secure over TLS)."""
    if csrf != request.cookies.get(LOGIN_COOKIE):
        return render(
            request,
            "login.html",
            {"nonce": csrf, "next": safe_next(next), "error": "The form expired; try again."},
            status=403,
        )
    db = get_db(request)
    try:
        async with db.session(write=True) as session:
            web, secret, _ = await sessions.open_session(
                session, token, hours=settings_of(request).web_session_hours
            )
            expires = web.expires_at
    except (Unauthorized, Forbidden):
        return render(
            request,
            "login.html",
            {"nonce": csrf, "next": safe_next(next), "error": "That token is not valid here."},
            status=401,
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        secret,
        httponly=True,
        secure=secure(request),
        samesite="strict",
        max_age=max(1, int((expires - utcnow()).total_seconds())),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, viewer: Poster) -> Response:
    """End the session (deleted from the store, so the cookie is worthless afterwards)."""
    secret = request.cookies.get(COOKIE, "")
    async with get_db(request).session(write=True) as session:
        await sessions.close_session(session, secret)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
