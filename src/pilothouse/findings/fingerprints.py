"""Stable fingerprints of findings, so a finding seen again in a later scan is the same finding.

- A SARIF result with `partialFingerprints` (GitHub's `primaryLocationLineHash`, or a
  scanner's own) keeps them: fingerprint = sha256("pf", rule id, sorted key=value pairs).
- Otherwise: sha256(rule id, normalised path, snippet window), where the snippet window is the
  flagged code with whitespace collapsed (the report's snippet, or the lines read from the
  scanned source). The line number is not part of it, so code moved up or down by an edit
  elsewhere in the file keeps its fingerprint. Only when no snippet exists at all does the line
  number stand in for it.
- Identical windows in one file (the same call written twice) are told apart by their order of
  appearance: the second gets `#2` (GitHub's `:2` suffix).
- Each finding also has a content key, sha256(rule id, snippet window) without the path: when a
  fingerprint is not found, an unmatched earlier finding with the same content key in the same
  scope is the same finding in a renamed file (deduplicate.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

_SPACE = re.compile(r"\s+")


def normalise_path(path: str, root: str | None = None) -> str:
    """A report's file location as a relative POSIX path (file:// and ./ removed, root cut)."""
    value = path.strip().replace("\\", "/")
    for prefix in ("file://", "file:"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    if root:
        base = root.replace("\\", "/").rstrip("/") + "/"
        if value.startswith(base):
            value = value[len(base) :]
    while value.startswith("./"):
        value = value[2:]
    return value.lstrip("/") if root else value


def normalise_snippet(text: str | None) -> str:
    """Whitespace collapsed, so re-indentation and line endings do not change the window."""
    return _SPACE.sub(" ", text or "").strip()


def flagged_lines(code: str, lines: Iterable[int]) -> str:
    """bandit's `code` is the flagged lines with a line of context each side, each prefixed by
    its number: keep only the flagged ones, without numbers (neighbours and numbers move)."""
    wanted = set(lines)
    kept = []
    for row in code.splitlines():
        number, _, text = row.strip().partition(" ")
        if number.isdigit() and (not wanted or int(number) in wanted):
            kept.append(text)
    return "\n".join(kept)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def content_key(rule_id: str, snippet: str | None) -> str | None:
    """The path-less key used to follow a finding into a renamed file (None without code)."""
    window = normalise_snippet(snippet)
    return _digest("content", rule_id, window) if window else None


def fingerprint(
    rule_id: str,
    path: str,
    line: int | None,
    snippet: str | None,
    partial: Mapping[str, str] | None = None,
) -> str:
    """The finding's fingerprint before occurrence numbering (see the module docstring)."""
    if partial:
        pairs = [f"{k}={v}" for k, v in sorted(partial.items())]
        return _digest("pf", rule_id, *pairs)
    window = normalise_snippet(snippet)
    where = window if window else f"line:{line or 0}"
    return _digest("loc", rule_id, path, where)


def numbered(base: str, occurrence: int) -> str:
    """The n-th identical window in one scan (1-based); the first keeps the base."""
    return base if occurrence <= 1 else _digest(base, f"#{occurrence}")
