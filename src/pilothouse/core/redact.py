"""Replacing known secret values in text: one rule for deployment logs, replica log files (the
scrubbing relay), text posted through the API and pilothouse's own logs.

The rule for what can be masked (docs/security.md):

- A secret must hold at least MIN_SECRET (8) non-blank characters. Shorter values are refused
  as secrets: masking a one-character value would garble every line, and not masking it would
  leak it silently.
- A multi-line secret is masked as a whole, and each of its lines of at least MIN_SECRET
  characters (trimmed) is masked on its own (output often prints such values line by line).
  Its shorter lines cannot be masked on their own, so together they must hold fewer than
  MIN_SECRET characters (a PEM key's short last base64 line passes; "abcd\\nefgh" does not).
  At most those few characters of a secret can appear unmasked, and only when it is printed
  line by line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")

MASK = "********"
MIN_SECRET = 8  # characters a secret, or one line of it masked on its own, must have


def _lines(secret: str) -> list[str]:
    return [part.strip() for part in secret.splitlines() if part.strip()]


def unmaskable(secret: str) -> str | None:
    """Why `secret` cannot be masked reliably in output (None: it can)."""
    if len("".join(secret.split())) < MIN_SECRET:
        return (
            f"a secret must have at least {MIN_SECRET} non-blank characters so that it can be "
            "masked in output; store a longer value, or store this one as a plain variable"
        )
    short = [line for line in _lines(secret) if len(line) < MIN_SECRET]
    if len(_lines(secret)) > 1 and sum(len(line) for line in short) >= MIN_SECRET:
        return (
            f"the lines of this multi-line secret shorter than {MIN_SECRET} characters hold "
            f"{sum(len(line) for line in short)} characters together; printed line by line they "
            f"could not be masked (at most {MIN_SECRET - 1} are allowed)"
        )
    return None


def patterns(secrets: Iterable[str]) -> list[str]:
    """What to replace for these secrets: each maskable value, and each long enough line of a
    multi-line value; longest first, so no shorter match splits one. Values shorter than
    MIN_SECRET (stored before the rule) are skipped rather than garbling every line."""
    found: set[str] = set()
    for secret in secrets:
        if len(secret.strip()) >= MIN_SECRET:
            found.add(secret)
        if "\n" in secret:
            found.update(line for line in _lines(secret) if len(line) >= MIN_SECRET)
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
