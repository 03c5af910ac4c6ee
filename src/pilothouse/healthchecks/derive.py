"""Health status derivation as pure functions (seed 000 HealthCheck, seed 001 Health Status).

Three states: healthy, degraded, unhealthy. Thresholds are configurable per service; the
defaults are the seeds':
- seed 000: healthy = database and redis connected, error rate < 0.01, response < 200 ms;
  degraded = database slow (> 100 ms) or redis slow (> 50 ms) or error rate 0.01-0.05 (or a
  response slower than 200 ms); unhealthy = database or redis disconnected, or error rate > 0.05.
- seed 001: one dependency failing while the service responds = degraded; several failing, or
  the service itself timing out / not responding = unhealthy. A service that answers with an
  unexpected HTTP status is unhealthy with that status as the reason ("HTTP 503"): it responds,
  so it is never called "not responding".
A certificate problem (the TLS probe failed, or the certificate expires within the warning
window, 14 days by default) makes a responding service degraded, never unhealthy: an expiring
certificate is a warning, not downtime (certificate_warning).
Flap damping: N consecutive unhealthy results before a change to unhealthy, M healthy results
before a change back (defaults 3 and 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["healthy", "degraded", "unhealthy"]
DependencyStatus = Literal["connected", "slow", "disconnected"]
RANK: dict[str, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@dataclass(frozen=True)
class Thresholds:
    response_ms: float = 200.0
    database_slow_ms: float = 100.0
    redis_slow_ms: float = 50.0
    error_rate_degraded: float = 0.01
    error_rate_unhealthy: float = 0.05
    failures_to_unhealthy: int = 3
    successes_to_healthy: int = 2


@dataclass(frozen=True)
class Dependency:
    """A probed dependency: `latency_ms` None means it could not be reached."""

    name: str
    kind: str  # "database", "redis", or another kind ("http", "tcp", "tls")
    latency_ms: float | None


@dataclass(frozen=True)
class Observation:
    """One probe round of a service or replica."""

    responded: bool  # the service answered (in time, with an expected status)
    http_statuses: tuple[int, ...] = ()  # the HTTP statuses it answered with, if any
    response_ms: float | None = None
    timed_out: bool = False
    error_rate: float | None = None  # 0.0-1.0 over the last 5 minutes, when known
    dependencies: tuple[Dependency, ...] = field(default_factory=tuple)
    certificate: str | None = None  # a certificate warning (certificate_warning), if any


def dependency_status(dep: Dependency, t: Thresholds = Thresholds()) -> DependencyStatus:
    """connected / slow / disconnected, with the seed 000 latency limits per kind."""
    if dep.latency_ms is None:
        return "disconnected"
    limit = {"database": t.database_slow_ms, "redis": t.redis_slow_ms}.get(dep.kind)
    if limit is not None and dep.latency_ms > limit:
        return "slow"
    return "connected"


def derive(obs: Observation, t: Thresholds = Thresholds()) -> tuple[Status, list[str]]:
    """The raw status of one observation, with the reasons that made it so."""
    reasons: list[str] = []
    if obs.timed_out or not obs.responded:
        answered = sorted({c for c in obs.http_statuses if not 200 <= c < 300})
        if obs.timed_out:
            reasons.append("timed out")
        elif answered:
            reasons.append("HTTP " + ", ".join(str(c) for c in answered))
        else:
            reasons.append("not responding")
        return "unhealthy", reasons
    statuses = {d.name: dependency_status(d, t) for d in obs.dependencies}
    down = sorted(n for n, s in statuses.items() if s == "disconnected")
    slow = sorted(n for n, s in statuses.items() if s == "slow")
    rate = obs.error_rate
    core_down = [
        d.name for d in obs.dependencies if d.name in down and d.kind in ("database", "redis")
    ]
    if len(down) > 1:
        reasons.append(f"dependencies down: {', '.join(down)}")
        return "unhealthy", reasons
    if rate is not None and rate > t.error_rate_unhealthy:
        reasons.append(f"error rate {rate:.3f} > {t.error_rate_unhealthy}")
        return "unhealthy", reasons
    if core_down:
        # seed 000: database or redis disconnected is unhealthy outright.
        reasons.append(f"{core_down[0]} disconnected")
        return "unhealthy", reasons
    if down:
        # seed 001: one (other) dependency failing while the service responds.
        reasons.append(f"dependency down: {down[0]}")
        return "degraded", reasons
    if slow:
        reasons.append(f"slow: {', '.join(slow)}")
    if rate is not None and rate >= t.error_rate_degraded:
        reasons.append(f"error rate {rate:.3f} >= {t.error_rate_degraded}")
    if obs.response_ms is not None and obs.response_ms >= t.response_ms:
        reasons.append(f"response {obs.response_ms:.0f} ms >= {t.response_ms:.0f} ms")
    if obs.certificate:
        reasons.append(obs.certificate)
    return ("degraded" if reasons else "healthy"), reasons


_DAYS_LEFT = re.compile(r"certificate expires in (-?\d+) days")


def certificate_warning(ok: bool, detail: str, warn_days: int) -> str | None:
    """What a TLS probe result (ok, detail) adds to its service's health: a warning when the
    handshake or the chain failed, or when the certificate expires within `warn_days` (the
    probe's detail says "certificate expires in N days"); None otherwise."""
    if not ok:
        return f"certificate: {detail}"
    found = _DAYS_LEFT.search(detail)
    if found is None:
        return None
    days = int(found.group(1))
    if days < 0:
        return "certificate expired"
    if days <= warn_days:
        return f"certificate expires in {days} days"
    return None


@dataclass(frozen=True)
class Damper:
    """Flap damping state: the published status and the current streak of raw results."""

    status: Status = "healthy"
    streak_status: Status = "healthy"
    streak: int = 0


def damp(state: Damper, raw: Status, t: Thresholds = Thresholds()) -> Damper:
    """Publish a change only after enough consecutive results agree.

    Getting worse to unhealthy needs `failures_to_unhealthy` results in a row; getting better
    (to healthy or degraded from something worse) needs `successes_to_healthy`; a change to
    degraded from healthy is published at once (it alerts nobody on its own)."""
    streak = state.streak + 1 if raw == state.streak_status else 1
    status = state.status
    if raw != status:
        if raw == "unhealthy":
            needed = t.failures_to_unhealthy
        elif RANK[raw] < RANK[status]:
            needed = t.successes_to_healthy
        else:
            needed = 1
        if streak >= needed:
            status = raw
    return Damper(status=status, streak_status=raw, streak=streak)


#: App-reported columns of health_checks (seed 000) summed over a service's replicas.
SUMMED = ("total_requests", "active_connections", "memory_usage_mb", "cpu_usage_percent")


def merge_figures(replicas: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A service's app-reported figures from its replicas': counts, memory and CPU summed, the
    longest uptime, and the error rate of the summed 5-minute window (errors / requests, from
    the `_window_requests` / `_window_errors` keys), so a busy replica weighs more than an idle
    one. Keys nobody reported are left out."""
    rows = list(replicas)
    merged: dict[str, Any] = {}
    for key in SUMMED:
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            merged[key] = sum(values)
    uptimes = [r["uptime_seconds"] for r in rows if r.get("uptime_seconds") is not None]
    if uptimes:
        merged["uptime_seconds"] = max(uptimes)
    requests = sum(r.get("_window_requests") or 0 for r in rows)
    errors = sum(r.get("_window_errors") or 0 for r in rows)
    if requests > 0:
        merged["error_rate_5min"] = min(errors / requests, 1.0)
    return merged
