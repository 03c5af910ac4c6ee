"""Request dependencies: the database session (one transaction per request) and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.core.crypto import CryptoError, Keyring, load_keyring
from pilothouse.core.db import Database
from pilothouse.core.inputs import (
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
#: check (the checked body, or None when it refuses). `refuse_bad_text` runs the check before
#: its walk over the body's containers (for MAX_JSON_DEPTH), which an accepted body does not
#: need, and leaves the checked body in `request.state.checked_body`.
SHAPED_BODIES: dict[object, Callable[[Any], Any]] = {}


def shaped_body(
    check: Callable[[Any], Any],
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register an endpoint's body check in SHAPED_BODIES (a decorator, under the route's)."""

    def register(endpoint: Callable[P, R]) -> Callable[P, R]:
        SHAPED_BODIES[endpoint] = check
        return endpoint

    return register


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
            check = SHAPED_BODIES.get(request.scope.get("endpoint"))
            if check is not None and not raw_text_may_be_bad(body):
                checked = check(document)
                if checked is not None:
                    # Its shape bounds the nesting: no container walk, and the endpoint takes
                    # the checked body instead of checking it again.
                    request.state.checked_body = checked
                    return
            if not raw_json_may_have_bad_text(body, document):
                return
            found = find_bad_text(document)
            if found:
                raise ValidationFailed(*found)
