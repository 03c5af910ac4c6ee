"""Request dependencies: the database session (one transaction per request) and the caller."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Receive, Scope

from pilothouse.access import Principal
from pilothouse.core.crypto import CryptoError, Keyring, load_keyring
from pilothouse.core.db import Database
from pilothouse.core.inputs import (
    MAX_JSON_DEPTH,
    find_bad_text,
    raw_json_may_have_bad_text,
    raw_text_may_be_bad,
    text_problem,
)
from pilothouse.errors import PilothouseError, Unauthorized, ValidationFailed
from pilothouse.users import service as users

P = ParamSpec("P")
R = TypeVar("R")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer ph_...`")


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """Commits when the route returns (before the response is sent); rolls back on error."""
    db = get_db(request)
    async with db.session(write=request.method not in READ_METHODS) as session:
        yield session


Session = Annotated[AsyncSession, Depends(_session, scope="function")]


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None, *, allow_ingest: bool
) -> Principal:
    """The one token check of every route; `allow_ingest` only on the metric push routes."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API token: send `Authorization: Bearer <token>`")
    db = get_db(request)
    async with db.session(write=False) as session:
        principal, token = await users.authenticate(
            session, credentials.credentials, allow_ingest=allow_ingest
        )
    if users.needs_touch(token):
        async with db.session(write=True) as session:
            await users.touch_token(session, token.id)
    return principal


async def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    return await _authenticate(request, credentials, allow_ingest=False)


Caller = Annotated[Principal, Depends(_principal)]


async def _ingest_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller of a metric push route: any token, including an ingest token."""
    return await _authenticate(request, credentials, allow_ingest=True)


IngestCaller = Annotated[Principal, Depends(_ingest_principal)]


class KeyUnavailable(PilothouseError):
    status = 503
    code = "key_unavailable"


def _keyring(request: Request) -> Keyring:
    """The master keyring, read per request (so `pilothouse keys rotate` needs no restart)."""
    settings = request.app.state.settings
    try:
        return load_keyring(settings.master_key, settings.master_key_path)
    except CryptoError as exc:
        raise KeyUnavailable(f"the server's master key is unavailable: {exc}") from None


Keys = Annotated[Keyring, Depends(_keyring)]


#: Endpoints whose JSON body has a checked shape that nests only a few levels: endpoint -> the
#: check of the body's raw JSON text (the checked body, or None when it refuses). A route of
#: `ShapedBodyRoute` decodes and checks such a body in one pass (`ShapedRequest.json`): the
#: endpoint and `refuse_bad_text` get the checked body, which needs no walk over its containers
#: (its shape bounds the nesting), and `checked_body(request)` returns it. A body
#: the check refuses is decoded with `json.loads` as on any route and walked.
SHAPED_BODIES: dict[object, Callable[[bytes], Any]] = {}


def shaped_body(
    check: Callable[[bytes], Any],
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register an endpoint's body check in SHAPED_BODIES (a decorator, under the route's, on a
    router whose `route_class` is `ShapedBodyRoute`)."""

    def register(endpoint: Callable[P, R]) -> Callable[P, R]:
        SHAPED_BODIES[endpoint] = check
        return endpoint

    return register


class ShapedRequest(Request):
    """A request whose JSON body is checked as it is decoded: `json()` returns the checked body
    when the check accepts the raw text (and that text holds no escape or byte of a NUL or a
    surrogate, which the check does not look for), else what `json.loads` makes of it.
    `checked_body` is the checked body once `json()` has run and the check accepted it, else
    None: only this class sets it, so nothing else can let a body skip `refuse_bad_text`."""

    def __init__(self, scope: Scope, receive: Receive, check: Callable[[bytes], Any]) -> None:
        super().__init__(scope, receive)
        self._check = check
        self.checked_body: Any = None

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            checked = None if raw_text_may_be_bad(body) else self._check(body)
            if checked is not None:
                self.checked_body = checked
                self._json = checked
            else:
                self._json = json.loads(body)
        return self._json


def checked_body(request: Request) -> Any:
    """The body a route of `ShapedBodyRoute` decoded and checked in one pass, or None (another
    route, a body its check refused, or one not decoded as JSON)."""
    return request.checked_body if isinstance(request, ShapedRequest) else None


class ShapedBodyRoute(APIRoute):
    """A route that hands its endpoint's registered body check (SHAPED_BODIES) to the request."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        check = SHAPED_BODIES.get(self.endpoint)
        if check is None:
            return handler

        async def shaped(request: Request) -> Response:
            return await handler(ShapedRequest(request.scope, request.receive, check))

        return shaped


async def refuse_bad_text(request: Request) -> None:
    """Every string of the request (path, query, JSON body) must be text both stores can hold."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and (rule := text_problem(value)):
            raise ValidationFailed(name, rule)
    for name, value in request.query_params.multi_items():
        if rule := text_problem(value):
            raise ValidationFailed(name, rule)
    # The bodies FastAPI parses as JSON: no content type at all, or a JSON type in any case
    # ("Application/JSON" too); anything narrower would let those bodies skip the check.
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media or media.endswith(("/json", "+json")):
        body = await request.body()
        if body:
            # Parsed once: Starlette caches it, and FastAPI parsed it already with the same call.
            try:
                document = await request.json()
            except ValueError:
                return  # FastAPI already answered a body that is not JSON
            except RecursionError:  # nested deeper than the decoder goes (thousands of levels)
                raise ValidationFailed(
                    "body", f"must not nest deeper than {MAX_JSON_DEPTH} levels"
                ) from None
            if checked_body(request) is not None:
                return  # decoded and checked by ShapedRequest.json: its shape bounds nesting
            if not raw_json_may_have_bad_text(body, document):
                return
            found = find_bad_text(document)
            if found:
                raise ValidationFailed(*found)
