"""Replica lifecycle decisions as pure functions (seed 001 Service Instance, seed 004 replicas).

The supervisor (deployments/supervisor.py) reads the facts and carries out what these decide:

- **Liveness**: a replica that is alive but whose last `failures` health checks (since it last
  started) all failed is restarted like a crashed one; the reason names the count and the last
  failure ("liveness: 3 failed checks: HTTP 503"). `failures` 0 turns liveness off.
- **Memory**: a replica above its memory limit for longer than `grace` seconds is restarted
  (like an OOM kill: "memory: 734 MB over the 512 MB limit for 10 s").
- **Give up**: a replica that has already been restarted `max_restarts` times within `window`
  seconds is not restarted again: it stays `failed` (seed 001: restart_count below the
  threshold). `max_restarts` 0 means never give up.
- **Service outcome**: once a replica is given up, its service is `degraded` while other
  replicas still run (or are being restarted), `failed` when none do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Outcome = Literal["degraded", "failed"]


@dataclass(frozen=True)
class CheckResult:
    """One stored health check of a replica (newest first when passed in a list)."""

    ok: bool
    http_status: int | None = None
    detail: str | None = None


def failure_text(check: CheckResult) -> str:
    """How one failed check reads in a reason: the HTTP status when it answered."""
    if check.http_status is not None and not 200 <= check.http_status < 400:
        return f"HTTP {check.http_status}"
    return (check.detail or "no answer").strip()[:200] or "no answer"


def liveness_failure(newest_first: list[CheckResult], failures: int) -> str | None:
    """The restart reason when the newest `failures` checks all failed, else None."""
    if failures <= 0 or len(newest_first) < failures:
        return None
    recent = newest_first[:failures]
    if any(check.ok for check in recent):
        return None
    return f"liveness: {failures} failed checks: {failure_text(recent[0])}"


@dataclass(frozen=True)
class MemoryVerdict:
    """What the supervisor keeps (`over_since`) and does (`reason`: restart when set)."""

    over_since: datetime | None
    reason: str | None = None


def memory_verdict(
    memory_mb: float | None,
    limit_mb: float | None,
    over_since: datetime | None,
    now: datetime,
    grace: float,
) -> MemoryVerdict:
    """Start, keep or clear the over-limit clock; a reason once it has run past `grace`."""
    if memory_mb is None or not limit_mb or memory_mb <= limit_mb:
        return MemoryVerdict(None)
    since = over_since or now
    held = (now - since).total_seconds()
    if held < grace:
        return MemoryVerdict(since)
    return MemoryVerdict(
        since,
        f"memory: {memory_mb:.0f} MB over the {limit_mb:.0f} MB limit for {held:.0f} s",
    )


def restarts_in_window(restarts: list[datetime], now: datetime, window: float) -> int:
    """How many of the restart times fall within the last `window` seconds."""
    start = now - timedelta(seconds=window)
    return sum(1 for at in restarts if at >= start)


def give_up(restarts_within_window: int, max_restarts: int) -> bool:
    """Whether a failed replica is left failed instead of restarted again."""
    return max_restarts > 0 and restarts_within_window >= max_restarts


def given_up_reason(restarts: int, window: float, last: str) -> str:
    """The reason a given-up replica carries: how often it restarted and why it failed last."""
    return f"gave up after {restarts} restarts in {window:.0f} s; last: {last}"[:500]


def service_outcome(still_live: int) -> Outcome:
    """A service with a given-up replica: degraded while others live, failed when none do."""
    return "degraded" if still_live > 0 else "failed"
