"""Replacing known secret values in text: one rule for deployment logs, replica log files (the
scrubbing relay) and pilothouse's own logs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")

MASK = "********"
MIN_LINE = 8  # lines of a multi-line secret shorter than this are not masked on their own


def patterns(secrets: Iterable[str]) -> list[str]:
    """What to replace for these secrets: each value, and each long line of a multi-line value
    (output often prints them line by line); longest first, so no shorter match splits one."""
    found: set[str] = set()
    for secret in secrets:
        if secret:
            found.add(secret)
        if "\n" in secret:
            found.update(
                part.strip() for part in secret.splitlines() if len(part.strip()) >= MIN_LINE
            )
    return sorted(found, key=len, reverse=True)


def scrub(text: str, pats: list[str], mask: str = MASK) -> str:
    """`text` with every pattern replaced by `mask`."""
    for pat in pats:
        if pat in text:
            text = text.replace(pat, mask)
    return text


def scrub_value(value: T, pats: list[str], mask: str = MASK) -> T:
    """`value` with every string inside it (dict values and keys, list items) scrubbed."""
    found: Any = value
    if isinstance(value, str):
        found = scrub(value, pats, mask)
    elif isinstance(value, dict):
        found = {scrub_value(k, pats, mask): scrub_value(v, pats, mask) for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        found = type(value)(scrub_value(v, pats, mask) for v in value)
    return found  # type: ignore[no-any-return]
