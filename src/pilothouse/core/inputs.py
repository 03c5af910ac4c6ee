"""Rules every request input follows, whatever the route: text each store can hold, no null where
a value is required, bounded JSON settings.

- Text: no NUL character (PostgreSQL text cannot hold it, SQLite can: refusing it everywhere keeps
  both stores the same) and no lone UTF-16 surrogate (JSON may carry "\\ud800", but it cannot be
  encoded as UTF-8, so the database driver, the cipher or a log line would fail on it).
  `find_bad_text` walks a decoded JSON document (keys and values, at any depth) and names the
  first offending field; the API applies it to every body, path and query parameter.
- `NotNull[T]`: an update field that may be omitted but not sent as null (its column cannot be
  null). The OpenAPI schema shows the plain type; null is refused with a 422 naming the field.
- `JsonSettings`: a JSON settings object (environment config, driver settings...) of at most
  `JSON_SETTINGS_MAX_BYTES` once serialised.
- Exact types, as the schema says: `Flag` (only true/false), `NotBool` (a number is not
  true/false), `IsoDateTime` (ISO 8601 with a time zone, not a Unix timestamp).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, TypeVar, Union, get_args

from pydantic import BeforeValidator, Field, GetCoreSchemaHandler, StrictBool
from pydantic_core import core_schema

T = TypeVar("T")

JSON_SETTINGS_MAX_BYTES = 64 * 1024
#: The largest value an INTEGER column holds on both stores (PostgreSQL's integer).
INT32_MAX = 2**31 - 1
MAX_JSON_DEPTH = 64

NUL_RULE = "must not contain the NUL character (\\u0000)"
SURROGATE_RULE = "must not contain a lone UTF-16 surrogate (\\ud800-\\udfff)"
NOT_NULL_RULE = "may be omitted, but not null"
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored, or None when it can."""
    if "\x00" in value:
        return NUL_RULE
    if not value.isascii() and _SURROGATE.search(value):
        return SURROGATE_RULE
    return None


#: A JSON escape that decodes to a NUL or to a UTF-16 surrogate half (a raw NUL is not valid
#: JSON; a body in UTF-16/32 has NUL bytes, so it always takes the full walk).
#: json.loads decodes UTF-8 bytes with "surrogatepass": a raw encoded surrogate (ED A0-BF ..)
#: gets in too.
_BAD_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")


def json_depth_exceeds(document: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a decoded JSON document holds a container at depth `limit` or deeper (the document
    itself is at depth 0), which find_bad_text refuses.

    Containers are told by their exact type, as `json.loads` makes them (dict and list; about 3x
    faster than isinstance on a large body, where most values are not containers)."""
    level: list[Any] = [document] if type(document) in _CONTAINERS else []
    for _ in range(limit):
        if not level:
            return False
        level = [
            child
            for value in level
            for child in (value.values() if type(value) is dict else value)
            if type(child) in _CONTAINERS
        ]
    return bool(level)


_CONTAINERS = frozenset({dict, list})


def raw_json_may_have_bad_text(raw: bytes, document: Any) -> bool:
    """False when `document`, decoded from the JSON text `raw`, surely holds no text
    find_bad_text refuses (no NUL byte, no escape of a NUL or surrogate, nesting within
    MAX_JSON_DEPTH); True when it may (then find_bad_text decides and names the field).

    A fast path for large bodies: a byte scan and a walk over containers only, instead of
    visiting every string and building every field path."""
    return raw_text_may_be_bad(raw) or json_depth_exceeds(document)


def raw_text_may_be_bad(raw: bytes) -> bool:
    """The byte scan of `raw_json_may_have_bad_text`: whether the JSON text `raw` may hold a
    NUL or a surrogate once decoded. The escape pattern is only searched when the body holds
    a `\\u` escape or an 0xED byte at all (plain substring tests, several times faster than the
    pattern on a body that has neither, the usual case)."""
    if b"\x00" in raw:
        return True
    return (b"\\u" in raw or b"\xed" in raw) and _BAD_ESCAPE.search(raw) is not None


def find_bad_text(document: Any, prefix: str = "") -> tuple[str, str] | None:
    """The first (field, rule) in a decoded JSON document whose text cannot be stored, or None.

    Fields are dotted paths (`config.hosts.1`); a bad key names the object holding it. Documents
    nested deeper than MAX_JSON_DEPTH are refused too (naming the field where it happens).
    """
    stack: list[tuple[str, Any, int]] = [(prefix, document, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, str):
            rule = text_problem(value)
            if rule:
                return path or "body", rule
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return path or "body", f"must not nest deeper than {MAX_JSON_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            children = []
            for key, child in items:
                if isinstance(key, str):
                    rule = text_problem(key)
                    if rule:
                        return path or "body", f"keys {rule}"
                children.append((f"{path}.{key}" if path else str(key), child, depth + 1))
            stack.extend(reversed(children))
    return None


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError(NOT_NULL_RULE)
    return value


def _no_default(schema: dict[str, Any]) -> None:
    # The default (None) only means "omitted": the schema must not offer null as a value.
    schema.pop("default", None)


class _RejectNull:
    """Validate `X | None` as X alone, refusing null with NOT_NULL_RULE (no union in errors)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        members = [arg for arg in get_args(source) if arg is not type(None)]
        inner = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        return core_schema.no_info_before_validator_function(
            _not_null, handler.generate_schema(inner)
        )


#: An update field that may be omitted but not sent as null (typed `T | None`, None = omitted).
NotNull = Annotated[T | None, _RejectNull(), Field(json_schema_extra=_no_default)]


def json_size_problem(value: Any, limit: int = JSON_SETTINGS_MAX_BYTES) -> str | None:
    """Why a JSON value is too large to keep as a settings field, or None."""
    try:
        size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
    except (TypeError, ValueError, RecursionError):
        return "must be a JSON value"
    if size > limit:
        return f"must be at most {limit} bytes as JSON (got {size})"
    return None


def _bounded_json(value: Any) -> Any:
    problem = json_size_problem(value)
    if problem:
        raise ValueError(problem)
    return value


#: Metadata for a JSON settings field: Annotated[dict[str, Any], JsonSettings].
JsonSettings = BeforeValidator(_bounded_json)


def _iso_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(DATETIME_RULE) from None
    else:
        raise ValueError(DATETIME_RULE)
    if parsed.tzinfo is None:
        raise ValueError(DATETIME_RULE)
    return parsed


DATETIME_RULE = "must be an ISO 8601 date and time with a time zone (2030-01-31T12:00:00Z)"

#: A date and time as the schema says (RFC 3339): not a number, not without a time zone.
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


#: Metadata for a number in a request: JSON true/false is not 1/0 (Annotated[int, NotBool]).
NotBool = BeforeValidator(_not_bool)
#: A boolean in a request: only JSON true or false (not 0, 1 or "yes").
Flag = StrictBool
