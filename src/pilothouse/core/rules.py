"""Seed validation rules as pure functions; schemas and services both call them.

Each check returns the normalised value or raises ValidationFailed(field, rule), where the rule
text says what is allowed ("must be between 1 and 100").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from pydantic import Field, JsonValue
from pydantic.fields import FieldInfo

from pilothouse.errors import ValidationFailed

N = TypeVar("N", int, float)

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
SHA_RE = re.compile(r"^[0-9a-fA-F]{40}$")
TAG_RE = re.compile(r"^v\d+\.\d+\.\d+$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
IMAGE_PATTERN = r"^[!-~]{1,500}$"  # printable ASCII: what an image reference may hold

#: Ranges from seed 004 (resources, replicas) — inclusive bounds.
RANGES: dict[str, tuple[float, float]] = {
    "target_replicas": (1, 100),
    "cpu_cores": (0.5, 32),
    "memory_mb": (512, 65536),
    "gpu_units": (0, 8),
    "storage_gb": (1, 1000),
}
COMMIT_MESSAGE_MAX = 500
IMAGE_MAX = 500
IMAGE_RE = re.compile(IMAGE_PATTERN)


def check_range(field: str, value: N) -> N:
    """Inclusive range check for the seed 004 numeric fields."""
    low, high = RANGES[field]
    if isinstance(value, bool) or not (low <= value <= high):
        lo = int(low) if float(low).is_integer() else low
        hi = int(high) if float(high).is_integer() else high
        raise ValidationFailed(field, f"must be between {lo} and {hi}")
    return value


def check_name(value: str, field: str = "name") -> str:
    """Names: 1-100 characters of letters, digits, '-' and '_'."""
    if not NAME_RE.fullmatch(value):
        raise ValidationFailed(field, "must be 1-100 characters of A-Z, a-z, 0-9, '-' or '_'")
    return value


def check_image(value: str, field: str = "image") -> str:
    """Container image reference: 1-500 printable ASCII characters, no whitespace."""
    if not IMAGE_RE.fullmatch(value):
        raise ValidationFailed(
            field, f"must be 1-{IMAGE_MAX} characters of printable ASCII without spaces"
        )
    return value


def check_commit_sha(value: str, field: str = "commit_sha") -> str:
    """Git commit SHA-1: exactly 40 hex characters (stored lower-case)."""
    if not SHA_RE.fullmatch(value):
        raise ValidationFailed(field, "must be exactly 40 hexadecimal characters")
    return value.lower()


def check_git_tag(value: str, field: str = "git_tag") -> str:
    """Semantic version tag vX.Y.Z."""
    if not TAG_RE.fullmatch(value):
        raise ValidationFailed(field, "must look like vX.Y.Z (e.g. v1.2.0)")
    return value


def check_image_digest(value: str, field: str = "image_digest") -> str:
    """Image digest: 'sha256:' followed by 64 lower-case hex characters."""
    if not DIGEST_RE.fullmatch(value):
        raise ValidationFailed(field, "must be 'sha256:' followed by 64 lower-case hex characters")
    return value


def check_version(value: str, field: str = "version") -> str:
    """Artifact version label: 1-100 characters of letters, digits, '.', '_', '+', '-'."""
    if not VERSION_RE.fullmatch(value):
        raise ValidationFailed(
            field, "must be 1-100 characters of letters, digits, '.', '_', '+' or '-'"
        )
    return value


def keep_commit_message(value: str) -> str:
    """Commit messages are kept to their first 500 characters (seed 000), never refused."""
    return value[:COMMIT_MESSAGE_MAX]


def as_validator(check: Callable[..., object], *args: str) -> Callable[[object], object]:
    """Adapt a check to a pydantic AfterValidator: ValidationFailed becomes ValueError(rule)."""

    def _validate(value: object) -> object:
        try:
            return check(value, *args)
        except ValidationFailed as exc:
            raise ValueError(exc.rule) from None

    return _validate


def schema_hint(**json_schema: JsonValue) -> FieldInfo:
    """Show a rule in the OpenAPI schema (pattern, minimum...) while its check stays ours.

    Pydantic's own constraints would validate first with their own wording; a hint only documents
    what the check (an AfterValidator) enforces, so clients and the schema fuzzer know the rule.
    """
    hint: FieldInfo = Field(json_schema_extra=json_schema)
    return hint


def range_hint(field: str) -> FieldInfo:
    """The inclusive range of a seed 004 numeric field, for the schema."""
    low, high = (int(b) if float(b).is_integer() else b for b in RANGES[field])
    return schema_hint(minimum=low, maximum=high)
