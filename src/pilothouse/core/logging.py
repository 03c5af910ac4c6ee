"""Structured JSON logs (structlog) with secret masking applied to every event.

Masking covers values under secret-looking keys and anything shaped like a pilothouse token,
wherever it appears (messages, exception text), so a log line never carries a secret.
"""

from __future__ import annotations

import logging
import re
import sys
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
    fresh = {v for v in values if len(v) >= 4} - _KNOWN
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


def configure(level: str = "info") -> None:
    """JSON lines on stderr at `level`."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
