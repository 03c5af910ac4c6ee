"""Which release a manual rollback returns to: a pure decision over a service's history.

A release *went live* when a deployment of it reached `success`; a release that never did (a
failed deployment, even one that was rolled back automatically) is never a rollback target.

The releases that went live form a stack, in the order they went live:
- a deployment that goes live pushes its release, unless that release is already on top
  (a restart, a scale or a config update keeps the live release);
- a rollback that goes live pops every release above its target: those were rolled back, and
  leave the stack wherever they stood (until deployed again). A rollback to a release no longer
  on the stack pops the one it rolled back from, then pushes its target. An automatic rollback
  returns to the release on top, so it changes nothing.

The target of `pilothouse rollback` is the release under the live one: the last release that
went live before the current one and was not rolled back since. Repeated rollbacks go further
back (like Capistrano's), they never bounce between two releases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One deployment of a service, oldest first: its release (artifact id or version), its
    event type, and whether it reached `success`."""

    release: str
    event: str
    went_live: bool


def stack(history: Sequence[Step]) -> list[str]:
    """The releases still standing, oldest first; the last one is live."""
    standing: list[str] = []
    for step in history:
        if not step.went_live:
            continue
        if step.event == "rollback":
            # Rolled back: everything above the target, or the live release when the target is
            # no longer standing; each is off the stack wherever it stood.
            if step.release in standing:
                cut = len(standing) - standing[::-1].index(step.release)
            else:
                cut = max(len(standing) - 1, 0)
            rolled = set(standing[cut:])
            standing = [r for r in standing[:cut] if r not in rolled]
        if not standing or standing[-1] != step.release:
            standing.append(step.release)
    return standing


def live_release(history: Sequence[Step]) -> str | None:
    """The release the history leaves live."""
    standing = stack(history)
    return standing[-1] if standing else None


def rollback_candidates(history: Sequence[Step], live: str | None) -> list[str]:
    """Releases a rollback may return to, best first (the caller skips deleted artifacts)."""
    if live is None:
        return []
    standing = stack(history)
    if live in standing:  # below the live release (the history may have been edited by hand)
        standing = standing[: len(standing) - 1 - standing[::-1].index(live)]
    seen: list[str] = []
    for release in reversed(standing):
        if release != live and release not in seen:
            seen.append(release)
    return seen


def rollback_target(history: Sequence[Step], live: str | None) -> str | None:
    """The last release that went live before `live` and was not rolled back since."""
    candidates = rollback_candidates(history, live)
    return candidates[0] if candidates else None


def went_live(history: Sequence[Step], release: str) -> bool:
    """True when some deployment of `release` reached success (a valid `rollback --to`)."""
    return any(step.went_live and step.release == release for step in history)
