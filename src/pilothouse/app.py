"""create_app(): the FastAPI application with its error handlers, the /api/v1 routes and the
dashboard (web/)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException

from pilothouse import __version__
from pilothouse.api import router as api_router
from pilothouse.certificates.api import challenges as acme_challenges
from pilothouse.config import Settings, get_settings
from pilothouse.core import keys
from pilothouse.core.asgi import BodyLimit
from pilothouse.core.db import Database
from pilothouse.core.logging import configure as configure_logging
from pilothouse.core.logging import get_logger
from pilothouse.core.store import RETRY_AFTER_SECONDS, disk_full, unreachable
from pilothouse.deps import refuse_bad_text
from pilothouse.errors import PilothouseError
from pilothouse.healthchecks.api import badges
from pilothouse.metrics import exposition
from pilothouse.web import views as web

log = get_logger("pilothouse.api")

DESCRIPTION = """
pilothouse is a self-hosted deployment control plane. Every route needs an API
token (`Authorization: Bearer ph_...`). Errors are JSON:
`{"error": code, "message": text, "detail": ...}`;
422 names the field and the rule, 409 names a conflict or the from/to of a refused transition,
404 covers missing, soft-deleted and other users' records alike.
While the store (pilothouse's database) is unreachable every route that needs it answers 503
`store_unavailable` with the reason and a `Retry-After` header; `/healthz` stays 200 and
`/readyz` answers 503 until the store is back. When the store's disk is full a write answers
503 `store_full` (nothing was changed).
"""


class StoreUnavailableBody(BaseModel):
    error: str = Field(
        description="`store_unavailable` (unreachable) or `store_full` (its disk refused a write)."
    )
    message: str = Field(description="What is wrong, for humans.")
    detail: dict[str, Any] = Field(description="`reason` (a few words) and `since` (UTC).")


class Readiness(BaseModel):
    status: str = Field(description="`ready`.")
    store: str = Field(description="`reachable`.")


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
#: The 503 every route that needs the store may answer (added to the OpenAPI description).
STORE_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": StoreUnavailableBody,
        "description": "The store is unreachable, or its disk is full; retry after "
        "`Retry-After` seconds.",
        "headers": _RETRY_AFTER,
    }
}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _rule(message: str) -> str:
    return message.removeprefix("Value error, ")


def _error(status: int, code: str, message: str, detail: Any = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": code, "message": message, "detail": detail}
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI schema declares on this path (for the Allow header of a 405)."""
    patterns: list[tuple[re.Pattern[str], set[str]]] | None = getattr(
        request.app.state, "path_methods", None
    )
    if patterns is None:
        patterns = [
            (
                re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))),
                {m.upper() for m in ops},
            )
            for path, ops in request.app.openapi()["paths"].items()
        ]
        request.app.state.path_methods = patterns
    path = request.url.path
    return sorted(set().union(*(methods for rx, methods in patterns if rx.fullmatch(path))))


def store_unavailable(request: Request, reason: str) -> JSONResponse:
    """503 with the reason and Retry-After (the outage itself is logged once, by the store)."""
    db: Database | None = getattr(request.app.state, "db", None)
    since = db.health.down_since if db is not None else None
    response = _error(
        503,
        "store_unavailable",
        f"the store is unreachable ({reason}); retry in {RETRY_AFTER_SECONDS} s",
        {"reason": reason, "since": since.isoformat() if since else None},
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


#: Seconds a client is told to wait while the store's disk is full (someone must make room).
FULL_RETRY_AFTER_SECONDS = 60
_full_logged_at = 0.0


def store_full() -> JSONResponse:
    """503 `store_full`: the store refused a write for lack of disk space (logged once a minute,
    without a traceback: the cause is known and is not a bug)."""
    global _full_logged_at
    now = time.monotonic()
    if now - _full_logged_at >= 60:
        _full_logged_at = now
        log.error("store disk full or failing: writes are refused until there is room")
    response = _error(
        503,
        "store_full",
        "the store's disk is full (or failing): nothing was changed; make room on the store's "
        "disk and retry",
        {"reason": "disk full", "since": None},
    )
    response.headers["Retry-After"] = str(FULL_RETRY_AFTER_SECONDS)
    return response


def _internal(request: Request, exc: Exception) -> JSONResponse:
    reason = unreachable(exc)
    if reason is not None:
        return store_unavailable(request, reason)
    if disk_full(exc):
        return store_full()
    # Log the details (masked) under an id; the client learns only the id.
    incident = uuid.uuid4().hex[:12]
    log.error(
        "unhandled error",
        incident=incident,
        method=request.method,
        path=request.url.path,
        exc_info=exc,
    )
    return _error(500, "internal", f"internal error; incident {incident} is in the server log")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PilothouseError)
    async def _pilothouse(request: Request, exc: PilothouseError) -> Response:
        page = web.error_page(request, exc.status, exc.message)
        if page is not None:  # a dashboard page: the error as HTML
            return page
        response = _error(exc.status, exc.code, exc.message, exc.detail)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        detail = [{"field": _field(e["loc"]), "rule": _rule(e["msg"])} for e in exc.errors()]
        message = "; ".join(f"{d['field']}: {d['rule']}" for d in detail)
        page = web.error_page(request, 422, message)
        if page is not None:  # a dashboard page: the same words, as HTML
            return page
        return _error(422, "validation_failed", message, detail)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        # Raised by the framework itself: unknown route, method not allowed, body over the limit,
        # a body it could not decode. All get the same JSON error body as ours.
        if exc.status_code == 400:  # the body could not be decoded (not UTF-8, not JSON)
            rule = "must be a JSON document encoded as UTF-8"
            return _error(
                422, "validation_failed", f"body: {rule}", [{"field": "body", "rule": rule}]
            )
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "error")
        response = _error(exc.status_code, code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:  # Starlette names only the first route's methods
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)

    @app.exception_handler(DBAPIError)
    async def _store(request: Request, exc: DBAPIError) -> JSONResponse:
        # Handled here, not by the catch-all above: the server would log a traceback after it.
        return _internal(request, exc)

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        # A last resort: the input rules (core/inputs.py, schema limits) should catch it first.
        return _error(
            422,
            "validation_failed",
            "a value cannot be stored: it is out of range or too long for its field",
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        # Raced past a service-level uniqueness check: report it, without the SQL or values.
        return _error(409, "conflict", "the change conflicts with an existing record")


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Build the app; on startup it upgrades the database (unless migrate=False)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    keys.use(settings.master_key, settings.master_key_path)  # for values sealed outside routes

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from pilothouse.setup import ensure_master_key, secure_data_dir

        secure_data_dir(settings.data_dir)  # before the SQLite store is opened in it
        url = settings.effective_database_url()
        if migrate:
            from pilothouse import migrations

            migrations.upgrade(url)
        app.state.db = Database(url, pool_size=settings.db_pool_size)
        # Backups and stored DSNs are sealed with it; `init` normally made it already.
        if not settings.master_key and ensure_master_key(settings.master_key_path):
            log.warning("created a master key", path=str(settings.master_key_path))
        worker = None
        if settings.role in ("all", "worker"):
            from pilothouse.worker import Worker

            settings.data_dir.mkdir(parents=True, exist_ok=True)
            worker = Worker(app.state.db, settings)
            await worker.start()
        app.state.worker = worker
        log.info("started", database=app.state.db.dialect, role=settings.role)
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await app.state.db.dispose()

    app = FastAPI(
        title="pilothouse",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(refuse_bad_text)],
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        # a scan report is streamed to disk by its route (findings/api.py)
        larger={"/api/v1/scans/import": settings.findings_max_report_mb * 1024 * 1024},
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(api_router, responses=STORE_UNAVAILABLE)
    app.include_router(badges, responses=STORE_UNAVAILABLE)
    app.include_router(exposition.router, responses=STORE_UNAVAILABLE)
    web.install(app)  # the dashboard: `/`, its pages and /static
    app.include_router(acme_challenges, responses=STORE_UNAVAILABLE)

    @app.get("/healthz", tags=["meta"], summary="Liveness: answers without touching the database")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get(
        "/readyz",
        tags=["meta"],
        summary="Readiness: 200 when the store answers, 503 while it is unreachable",
        response_model=Readiness,
        responses=STORE_UNAVAILABLE,
    )
    async def readyz(request: Request) -> Any:
        reason = await request.app.state.db.ping()
        if reason is not None:
            return store_unavailable(request, reason)
        return Readiness(status="ready", store="reachable")

    return app
