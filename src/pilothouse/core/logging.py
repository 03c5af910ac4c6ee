"""Structured JSON logs (structlog) with secret masking applied to every event.

Masking covers values under secret-looking keys, anything shaped like a pilothouse token,
passwords in URLs and the secret values this process has opened, wherever they appear
(messages, fields, exception text and tracebacks), so a log line never carries a secret. The
standard library's loggers (uvicorn's "Exception in ASGI application" with its traceback,
asyncio's "exception was never retrieved") and uncaught exceptions in the main thread or any
other thread go through the same processors: nothing reaches stderr unmasked.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any

import structlog

from pilothouse.core import redact, urls

SECRET_KEYS = re.compile(r"(token|secret|password|passwd|api_key|private|credential)", re.I)
TOKEN_SHAPE = re.compile(r"ph_[A-Za-z0-9_-]{16,}")


#: Secret values this process has opened (environment variables handed to a deployment): every
#: log line is scrubbed of them, wherever they appear (messages, exception text, fields).
_KNOWN: set[str] = set()
_PATTERNS: list[str] = []


def register_secrets(values: list[str]) -> None:
    """Remember secret values so that no log line of this process can carry them."""
    fresh = set(values) - _KNOWN
    if fresh:
        _KNOWN.update(fresh)
        _PATTERNS[:] = redact.patterns(_KNOWN)  # computed here, not on every log line


def mask_text(text: str) -> str:
    """Hide known secret values, tokens and passwords inside URLs in free text."""
    text = redact.scrub(text, _PATTERNS, "***")
    return urls.mask_text(TOKEN_SHAPE.sub("ph_***", text))


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: ("***" if SECRET_KEYS.search(str(k)) else _mask(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(v) for v in value]
    return value


def mask_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask every field of the event."""
    for key in list(event):
        event[key] = "***" if SECRET_KEYS.search(key) else _mask(event[key])
    return event


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the sys.stderr of the moment (tests and servers may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _stdlib_handler() -> logging.Handler:
    """A root handler formatting standard-library records with the same masking processors."""
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                mask_secrets,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    return handler


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    get_logger("pilothouse").error("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def configure(level: str = "info") -> None:
    """JSON lines on stderr at `level`, for structlog and the standard library's loggers."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [_stdlib_handler()]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio"):
        # their own handlers (uvicorn's default config) would write unmasked tracebacks
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
    # chatter, and httpx's request lines carry URLs (a Slack webhook's path is its token)
    for name in ("alembic", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_thread


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
