"""Uptime and SLA arithmetic as pure functions (seed 003 Monitoring Data / Uptime Calculation).

uptime % = (minutes in period - downtime minutes) / minutes in period, where downtime is
- HTTP 5xx (or no answer) on more than 50% of the checks of each minute, for more than
  1 minute in a row, or
- complete unavailability (no answer) for more than 30 seconds,
and neither declared maintenance windows nor the time a service was stopped (`pilothouse service
stop` until `service start`, from its status history) are counted as downtime.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Outcome = Literal["up", "error", "down"]  # answered / answered with 5xx / no answer
Interval = tuple[datetime, datetime]

ERROR_SHARE = 0.5
ERROR_RUN = timedelta(minutes=1)
DOWN_RUN = timedelta(seconds=30)


@dataclass(frozen=True)
class Check:
    at: datetime
    outcome: Outcome
    response_ms: float | None = None


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    minutes: float
    downtime_minutes: float
    uptime_percent: float
    checks: int
    p95_ms: float | None
    avg_ms: float | None
    outages: list[Interval]
    sla_target: float
    sla_met: bool
    stopped_minutes: float = 0.0  # the service was stopped: not counted as downtime


def month_bounds(month: str) -> Interval:
    """'2026-11' -> [2026-11-01 00:00 UTC, 2026-12-01 00:00 UTC)."""
    try:
        year, mon = (int(part) for part in month.split("-"))
        start = datetime(year, mon, 1, tzinfo=UTC)
    except ValueError:
        raise ValueError(f"month must look like 2026-11, not {month!r}") from None
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union."""
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(intervals: Sequence[Interval], holes: Sequence[Interval]) -> list[Interval]:
    """`intervals` minus `holes` (both may overlap themselves)."""
    result: list[Interval] = []
    cut = merge(holes)
    for start, end in merge(intervals):
        pieces = [(start, end)]
        for h_start, h_end in cut:
            next_pieces = []
            for p_start, p_end in pieces:
                if h_end <= p_start or h_start >= p_end:
                    next_pieces.append((p_start, p_end))
                    continue
                if h_start > p_start:
                    next_pieces.append((p_start, h_start))
                if h_end < p_end:
                    next_pieces.append((h_end, p_end))
            pieces = next_pieces
        result.extend(pieces)
    return result


def stopped_intervals(
    changes: Sequence[tuple[datetime, str]], start: datetime, end: datetime
) -> list[Interval]:
    """The spans of [start, end) the service was `stopped`, from its status changes
    (time, new status) in time order, the last one before `start` included: a span opens when
    the service goes to `stopped` and closes at its next change (or at `end`)."""
    spans: list[Interval] = []
    since: datetime | None = None
    for at, status in changes:
        if status == "stopped":
            since = at if since is None else since
        elif since is not None:
            spans.append((since, at))
            since = None
    if since is not None:
        spans.append((since, end))
    return clip(merge(spans), start, end)


def clip(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    return [(max(a, start), min(b, end)) for a, b in intervals if b > start and a < end]


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def error_downtime(checks: Sequence[Check]) -> list[Interval]:
    """Runs of minutes where more than half the checks failed, longer than 1 minute.

    A check that got no answer counts as failed too: it is at least as bad as a 5xx, and
    leaving it out would let a timeout split a 5xx run into runs too short to count (found by
    the property test: a worse check must never raise uptime)."""
    per_minute: dict[datetime, list[Check]] = {}
    for check in checks:
        per_minute.setdefault(_minute(check.at), []).append(check)
    bad = sorted(
        m
        for m, cs in per_minute.items()
        if sum(c.outcome != "up" for c in cs) / len(cs) > ERROR_SHARE
    )
    runs: list[Interval] = []
    for minute in bad:
        if runs and runs[-1][1] == minute:
            runs[-1] = (runs[-1][0], minute + timedelta(minutes=1))
        else:
            runs.append((minute, minute + timedelta(minutes=1)))
    return [r for r in runs if r[1] - r[0] > ERROR_RUN]


def unavailable_downtime(checks: Sequence[Check], end: datetime) -> list[Interval]:
    """From the first unanswered check to the next answered one, when longer than 30 s."""
    runs: list[Interval] = []
    down_since: datetime | None = None
    for check in sorted(checks, key=lambda c: c.at):
        if check.outcome == "down":
            down_since = down_since or check.at
        elif down_since is not None:
            runs.append((down_since, check.at))
            down_since = None
    if down_since is not None:
        runs.append((down_since, end))
    return [r for r in runs if r[1] - r[0] > DOWN_RUN]


def p95(values: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def report(
    checks: Sequence[Check],
    start: datetime,
    end: datetime,
    *,
    maintenance: Sequence[Interval] = (),
    sla_target: float = 99.5,
) -> Report:
    """Uptime, downtime, response times and SLA over [start, end)."""
    inside = [c for c in checks if start <= c.at < end]
    times = [c.response_ms for c in inside if c.response_ms is not None and c.outcome == "up"]
    return summarize(
        start,
        end,
        downtime(inside, end),
        maintenance=maintenance,
        response_ms=times,
        checks=len(inside),
        sla_target=sla_target,
    )


def downtime(checks: Sequence[Check], end: datetime) -> list[Interval]:
    """Both downtime rules over a run of checks, merged."""
    return merge(error_downtime(checks) + unavailable_downtime(checks, end))


def summarize(
    start: datetime,
    end: datetime,
    outages: Sequence[Interval],
    *,
    maintenance: Sequence[Interval] = (),
    stopped: Sequence[Interval] = (),
    response_ms: Sequence[float] = (),
    checks: int = 0,
    sla_target: float = 99.5,
    p95_ms: float | None = None,
) -> Report:
    """The report from downtime intervals already found (stored ones and fresh ones); neither
    `maintenance` windows nor `stopped` spans count as downtime."""
    excluded = clip([*maintenance, *stopped], start, end)
    counted = subtract(clip(merge(outages), start, end), excluded)
    stopped_seconds = sum((b - a).total_seconds() for a, b in merge(clip(stopped, start, end)))
    minutes = (end - start).total_seconds() / 60
    down = sum((b - a).total_seconds() for a, b in counted) / 60
    # 100 - share, so no downtime is exactly 100.0 (not 100 * m / m with rounding noise).
    uptime = min(100.0, max(0.0, 100.0 - 100.0 * down / minutes)) if minutes > 0 else 100.0
    times = list(response_ms)
    return Report(
        start=start,
        end=end,
        minutes=minutes,
        downtime_minutes=down,
        uptime_percent=uptime,
        checks=checks,
        p95_ms=p95_ms if p95_ms is not None else p95(times),
        avg_ms=sum(times) / len(times) if times else None,
        outages=counted,
        sla_target=sla_target,
        sla_met=uptime >= sla_target,
        stopped_minutes=stopped_seconds / 60,
    )
