"""Queries over the metric store: latest, count/sum/avg/min/max, P50/P95/P99, rate, per-step
points and the 5-minute rolling average, over a window, optionally grouped by a tag.

A window is read from the coarsest data that covers it exactly: `plan` (pure) splits it into
segments of hourly, 5-minute or 1-minute rollups (aligned buckets that are rolled up and still
kept) and raw samples (the rest, notably everything after the last rollup). Quantiles are exact
when the window is read from raw samples only, else they come from the merged DDSketches (1%
relative accuracy). A window edge inside a bucket whose raw samples are gone reads the whole
bucket (the store cannot split it).

`aggregate(db, ...)` is the function other capabilities call (autoscaling, release analysis).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from ddsketch import DDSketch
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.metrics import sketch as sketches
from pilothouse.metrics.models import (
    RESOLUTIONS,
    MetricRollup,
    MetricRollupProgress,
    MetricSeries,
    metric_samples,
)
from pilothouse.metrics.storage import floor_to

Stat = Literal[
    "latest", "count", "sum", "avg", "min", "max", "p50", "p95", "p99", "rate", "increase"
]
STATS: tuple[str, ...] = Stat.__args__  # type: ignore[attr-defined]
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
ROLLING = 300  # the rolling average's width, seconds


def plan(
    start: int, end: int, done: Mapping[int, int], kept_from: Mapping[int, int]
) -> list[tuple[int, int, int]]:
    """Segments (level, from, to) covering [start, end) in epoch seconds; level 0 is raw
    samples, else a rollup resolution. `done[r]`: rolled up before this second; `kept_from[r]`:
    the oldest second level r still holds (0 for raw)."""
    segments: list[tuple[int, int, int]] = []
    cursor = start
    finest = RESOLUTIONS[0]
    while cursor < end:
        rolled = done.get(finest, 0)
        if cursor >= rolled:
            segments.append((0, cursor, end))
            break
        picked = None
        for index in range(len(RESOLUTIONS) - 1, -1, -1):
            res = RESOLUTIONS[index]
            limit = min(done.get(res, 0), floor_to(end, res))
            if cursor % res or cursor + res > limit or cursor < kept_from.get(res, 0):
                continue
            if index + 1 < len(RESOLUTIONS):  # stop at the next coarser boundary
                coarser = RESOLUTIONS[index + 1]
                limit = min(limit, floor_to(cursor, coarser) + coarser)
            picked = (res, cursor, limit)
            break
        if picked is not None:
            segments.append(picked)
            cursor = picked[2]
            continue
        following = min(floor_to(cursor, finest) + finest, end)
        if cursor >= kept_from.get(0, 0) or (following - cursor < finest and cursor + 1 >= end):
            segments.append((0, cursor, following))
        else:  # raw samples gone: read the whole bucket (the finest level that kept it)
            for res in RESOLUTIONS:
                if floor_to(cursor, res) >= kept_from.get(res, 0):
                    low = floor_to(cursor, res)
                    segments.append((res, low, low + res))
                    following = max(following, low + res)
                    break
        cursor = following
    merged: list[tuple[int, int, int]] = []
    for seg in segments:
        if merged and merged[-1][0] == seg[0] and merged[-1][2] >= seg[1]:
            merged[-1] = (seg[0], merged[-1][1], max(seg[2], merged[-1][2]))
        else:
            merged.append(seg)
    return merged


@dataclass
class Window:
    """What a window holds for one group: figures, raw values (exact quantiles), a sketch (when
    rollups were read), per-series ordered (min, max, last) for rates, per-minute points."""

    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    raw: list[float] = field(default_factory=list)
    sketch: DDSketch | None = None
    ordered: dict[int, list[tuple[float, float, float]]] = field(default_factory=dict)
    points: dict[int, tuple[int, float]] = field(default_factory=dict)  # step -> (count, sum)

    def add(
        self,
        series_id: int,
        at: int,
        count: int,
        total: float,
        low: float,
        high: float,
        last: float,
        step: int,
    ) -> None:
        self.count += count
        self.total += total
        self.low = min(self.low, low)
        self.high = max(self.high, high)
        self.ordered.setdefault(series_id, []).append((low, high, last))
        key = floor_to(at, step)
        n, s = self.points.get(key, (0, 0.0))
        self.points[key] = (n + count, s + total)


def increase(ordered: Sequence[tuple[float, float, float]]) -> float:
    """How much a counter grew over time-ordered (min, max, last) entries: raw samples (all
    three the value) or buckets. Inside a bucket it grew max - min (plus `last` when it ended
    below its max: a reset); between entries, from the one's last to the next one's min. A drop
    is a reset: the counter restarted from zero, so its new value is all increase."""
    grown = 0.0
    for low, high, last in ordered:
        if high > low:
            grown += high - low + (last if last < high else 0.0)
    for (_, _, before), (after, _, _) in itertools.pairwise(ordered):
        grown += after - before if after >= before else after
    return grown


def exact_quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile of `values` by linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def figure(window: Window, stat: str, seconds: float, latest: float | None) -> float | None:
    """One statistic of a window."""
    if stat == "latest":
        return latest
    if window.count == 0:
        return None
    if stat == "count":
        return float(window.count)
    if stat == "sum":
        return window.total
    if stat == "avg":
        return window.total / window.count
    if stat == "min":
        return window.low
    if stat == "max":
        return window.high
    if stat in QUANTILES:
        if window.sketch is None:
            return exact_quantile(window.raw, QUANTILES[stat])
        sketch = sketches.merged([window.sketch, sketches.new_sketch(window.raw)])
        return sketches.quantile(sketch, QUANTILES[stat])
    grown = sum(increase(pairs) for pairs in window.ordered.values())
    if stat == "increase":
        return grown
    if stat == "rate":
        return grown / seconds if seconds > 0 else None
    raise ValueError(f"unknown statistic {stat!r}")


def rolling(
    points: Mapping[int, tuple[int, float]], step: int, width: int = ROLLING
) -> list[tuple[int, float]]:
    """The rolling average at each step: the mean of the samples in the `width` seconds that
    end with that step."""
    out = []
    keys = sorted(points)
    span = max(width // step, 1)
    for key in keys:
        n = 0
        s = 0.0
        for back in range(span):
            got = points.get(key - back * step)
            if got:
                n += got[0]
                s += got[1]
        if n:
            out.append((key, s / n))
    return out


@dataclass(frozen=True)
class Group:
    """The result for one group (the tag's value, or "" ungrouped)."""

    group: str
    series: int
    value: float | None
    figures: dict[str, float | None]
    points: list[tuple[int, float]]
    rolling: list[tuple[int, float]]


async def levels(session: AsyncSession) -> tuple[dict[int, int], dict[int, int]]:
    """(done, kept): up to which second each rollup level is rolled up (absent: never), and
    the oldest second each level still holds (0: raw samples), from the data itself (so
    retention overrides and passes that have not run yet are accounted for). One statement:
    each figure is a primary key or an index's first entry."""
    oldest = sa.select(sa.func.min(metric_samples.c.ts)).scalar_subquery()
    firsts = [
        sa.select(sa.func.min(MetricRollup.bucket))
        .where(MetricRollup.resolution == res)
        .scalar_subquery()
        for res in RESOLUTIONS
    ]
    marks = [
        sa.select(MetricRollupProgress.done_until)
        .where(MetricRollupProgress.resolution == res)
        .scalar_subquery()
        for res in RESOLUTIONS
    ]
    row = (await session.execute(sa.select(oldest, *firsts, *marks))).one()
    count = len(RESOLUTIONS)
    kept = {0: 2**62 if row[0] is None else int(row[0]) // 1000}
    for res, bucket in zip(RESOLUTIONS, row[1 : 1 + count], strict=True):
        kept[res] = 2**62 if bucket is None else int(bucket)
    done = {
        res: int(mark)
        for res, mark in zip(RESOLUTIONS, row[1 + count :], strict=True)
        if mark is not None
    }
    return done, kept


async def matching_series(
    session: AsyncSession,
    name: str,
    tags: Mapping[str, str],
    visible: sa.ColumnElement[bool] | None,
) -> list[MetricSeries]:
    """The series named `name` whose tags include all of `tags`. The store filters on the tags
    (one of 10,000 series of a name is read, not all of them); the exact comparison is made
    again here."""
    query = sa.select(MetricSeries).where(MetricSeries.name == name).order_by(MetricSeries.id)
    for key, value in tags.items():
        query = query.where(MetricSeries.tags[key].as_string() == value)
    if visible is not None:
        query = query.where(visible)
    rows = (await session.scalars(query)).all()
    return [s for s in rows if all(str(s.tags.get(k)) == v for k, v in tags.items())]


async def run_query(
    session: AsyncSession,
    series: Sequence[MetricSeries],
    *,
    window: timedelta,
    stats: Sequence[str],
    group_by: str | None = None,
    now: datetime | None = None,
    step: int = 60,
) -> list[Group]:
    """Figures over `window` ending `now` for `series`, per group."""
    now = now or utcnow()
    now_s = int(now.timestamp())
    start = now_s - max(int(window.total_seconds()), 1)
    end = now_s + 1  # a sample at `now` is inside the window
    done, kept = await levels(session)
    segments = plan(start, end, done, kept)
    groups: dict[str, list[int]] = {}
    for s in series:
        groups.setdefault(str(s.tags.get(group_by, "")) if group_by else "", []).append(s.id)
    group_of = {sid: g for g, ids in groups.items() for sid in ids}
    windows = {g: Window() for g in groups}
    ids = list(group_of)
    latest: dict[str, tuple[int, float]] = {}
    # Two statements at most, whatever the segments: every raw range in one, every rollup
    # range in the other; then the rows are taken in (series, time) order.
    raw_ranges = [(lo, hi) for level, lo, hi in segments if level == 0]
    rollup_ranges = [(level, lo, hi) for level, lo, hi in segments if level != 0]
    rows: list[tuple[int, int, int, object]] = []  # (series, epoch ms, level, row)
    if ids and raw_ranges:
        found = await session.execute(
            sa.select(metric_samples.c.series_id, metric_samples.c.ts, metric_samples.c.value)
            .where(
                metric_samples.c.series_id.in_(ids),
                sa.or_(
                    *(
                        sa.and_(metric_samples.c.ts >= lo * 1000, metric_samples.c.ts < hi * 1000)
                        for lo, hi in raw_ranges
                    )
                ),
            )
            # The (series_id, ts) index's order: ordering by ts alone lets a planner pick the
            # ts index and scan every series in the window.
            .order_by(metric_samples.c.series_id, metric_samples.c.ts)
        )
        rows.extend((int(sid), int(ts), 0, value) for sid, ts, value in found)
    if ids and rollup_ranges:
        found_rollups = await session.scalars(
            sa.select(MetricRollup)
            .where(
                MetricRollup.series_id.in_(ids),
                sa.or_(
                    *(
                        sa.and_(
                            MetricRollup.resolution == level,
                            MetricRollup.bucket >= lo,
                            MetricRollup.bucket < hi,
                        )
                        for level, lo, hi in rollup_ranges
                    )
                ),
            )
            .order_by(MetricRollup.series_id, MetricRollup.bucket)
        )
        rows.extend((r.series_id, r.bucket * 1000, r.resolution, r) for r in found_rollups)
    if raw_ranges and rollup_ranges:
        rows.sort(key=lambda item: (item[0], item[1]))
    for sid, ms, level, payload in rows:
        g = group_of[sid]
        w = windows[g]
        if level == 0:
            value = float(payload)  # type: ignore[arg-type]
            w.add(sid, ms // 1000, 1, value, value, value, value, step)
            w.raw.append(value)
            if g not in latest or ms >= latest[g][0]:
                latest[g] = (ms, value)
            continue
        row: MetricRollup = payload  # type: ignore[assignment]
        w.add(sid, row.bucket, row.count, row.sum, row.min, row.max, row.last, step)
        part = sketches.loads(row.sketch)
        if w.sketch is None:
            w.sketch = part
        else:
            w.sketch.merge(part)
        ts = (row.bucket + level) * 1000 - 1
        if g not in latest or ts >= latest[g][0]:
            latest[g] = (ts, row.last)
    seconds = float(now_s - start)
    out = []
    for g in sorted(groups):
        w = windows[g]
        last = latest.get(g, (0, None))[1]
        figures = {stat: figure(w, stat, seconds, last) for stat in stats}
        points = [(k, s / n) for k, (n, s) in sorted(w.points.items()) if n]
        out.append(
            Group(
                group=g,
                series=len(groups[g]),
                value=figures[stats[0]] if stats else None,
                figures=figures,
                points=points,
                rolling=rolling(w.points, step),
            )
        )
    return out


async def aggregate(
    db: Database,
    name: str,
    tags: Mapping[str, str] | None = None,
    *,
    window: timedelta,
    stat: str = "avg",
    group_by: str | None = None,
    now: datetime | None = None,
) -> dict[str, float | None]:
    """`stat` of metric `name` (series whose tags include `tags`) over `window`, per group (the
    tag's value; "" when ungrouped). The entry point for other capabilities; no access check."""
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; one of {', '.join(STATS)}")
    async with db.session(write=False) as session:
        found = await matching_series(session, name, tags or {}, None)
        groups = await run_query(
            session, found, window=window, stats=[stat], group_by=group_by, now=now
        )
    return {g.group: g.value for g in groups}
