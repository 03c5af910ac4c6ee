"""Bounded storage: rollups of raw samples into 1-minute, 5-minute and hourly buckets, and
retention of each level.

Rollups run in a cascade: 1-minute buckets from raw samples, 5-minute from 1-minute, hourly from
5-minute, each only over buckets that have ended (raw samples get `GRACE` seconds to arrive late)
and from where the level stopped last time (`metric_rollup_progress`), so a pass is idempotent
and a missed pass is caught up (at most `MAX_SPAN` seconds per level and pass). Retention deletes
each level older than its window (the settings' defaults or the series' own override), and never
raw samples or buckets the next level has not rolled up yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from ddsketch import DDSketch
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.core.db import Database
from pilothouse.metrics import sketch as sketches
from pilothouse.metrics.models import (
    RESOLUTIONS,
    MetricRollup,
    MetricRollupProgress,
    MetricSeries,
    metric_samples,
)

#: Seconds a raw sample may arrive after its minute ended and still be rolled up.
GRACE = 60
#: The most seconds of one level rolled up in one pass (bounds memory; later passes catch up).
MAX_SPAN = 6 * 3600
#: The finer level each resolution is built from (0: raw samples).
SOURCE_OF = {60: 0, 300: 60, 3600: 300}
OVERRIDE_COLUMN = {
    0: MetricSeries.retention_raw,
    60: MetricSeries.retention_1m,
    300: MetricSeries.retention_5m,
    3600: MetricSeries.retention_1h,
}


@dataclass(frozen=True)
class Retention:
    """Default seconds each level is kept (0: raw samples)."""

    raw: int = 24 * 3600
    m1: int = 7 * 86400
    m5: int = 30 * 86400
    h1: int = 400 * 86400

    def of(self, level: int) -> int:
        return {0: self.raw, 60: self.m1, 300: self.m5, 3600: self.h1}[level]


@dataclass
class Bucket:
    """A bucket being built: count, sum, min, max, last and a sketch."""

    count: int
    total: float
    low: float
    high: float
    last: float
    sketch: DDSketch

    def row(self, series_id: int, resolution: int, bucket: int) -> dict[str, object]:
        return {
            "series_id": series_id,
            "resolution": resolution,
            "bucket": bucket,
            "count": self.count,
            "sum": self.total,
            "min": self.low,
            "max": self.high,
            "last": self.last,
            "sketch": sketches.dumps(self.sketch),
        }


def floor_to(seconds: int, step: int) -> int:
    return seconds - seconds % step


def buckets_from_raw(
    rows: Sequence[tuple[int, int, float]], resolution: int
) -> dict[tuple[int, int], Bucket]:
    """(series id, bucket start) -> Bucket from raw (series_id, ts_ms, value) rows ordered by
    series and time."""
    out: dict[tuple[int, int], Bucket] = {}
    for series_id, ts, value in rows:
        key = (series_id, floor_to(ts // 1000, resolution))
        found = out.get(key)
        if found is None:
            out[key] = Bucket(1, value, value, value, value, sketches.new_sketch([value]))
        else:
            found.count += 1
            found.total += value
            found.low = min(found.low, value)
            found.high = max(found.high, value)
            found.last = value
            found.sketch.add(value)
    return out


def buckets_from_rollups(
    rows: Sequence[MetricRollup], resolution: int
) -> dict[tuple[int, int], Bucket]:
    """Coarser buckets merged from finer rollups (ordered by series and bucket)."""
    out: dict[tuple[int, int], Bucket] = {}
    for row in rows:
        key = (row.series_id, floor_to(row.bucket, resolution))
        part = sketches.loads(row.sketch)
        found = out.get(key)
        if found is None:
            out[key] = Bucket(row.count, row.sum, row.min, row.max, row.last, part)
        else:
            found.count += row.count
            found.total += row.sum
            found.low = min(found.low, row.min)
            found.high = max(found.high, row.max)
            found.last = row.last
            found.sketch.merge(part)
    return out


async def progress(session: AsyncSession) -> dict[int, int]:
    """Up to which epoch second each resolution is rolled up (absent: never)."""
    rows = (await session.execute(sa.select(MetricRollupProgress))).scalars().all()
    return {row.resolution: row.done_until for row in rows}


async def _start_of(session: AsyncSession, level: int, done: dict[int, int]) -> int | None:
    """Where a level that never ran starts: its source's oldest data."""
    if level == 60:
        oldest = await session.scalar(sa.select(sa.func.min(metric_samples.c.ts)))
        return None if oldest is None else floor_to(int(oldest) // 1000, 60)
    oldest = await session.scalar(
        sa.select(sa.func.min(MetricRollup.bucket)).where(
            MetricRollup.resolution == SOURCE_OF[level]
        )
    )
    return None if oldest is None else floor_to(int(oldest), level)


async def rollup(db: Database, now: datetime) -> dict[str, int]:
    """One rollup pass over every level; returns buckets written per level."""
    written: dict[str, int] = {}
    now_s = int(now.timestamp())
    for level in RESOLUTIONS:
        async with db.session() as session:
            done = await progress(session)
            start = done.get(level)
            if start is None:
                start = await _start_of(session, level, done)
                if start is None:
                    written[f"{level}s"] = 0
                    continue
            if level == 60:
                ready = floor_to(now_s - GRACE, 60)
            else:
                ready = floor_to(done.get(SOURCE_OF[level], 0), level)
            end = min(ready, start + MAX_SPAN)
            if end <= start:
                written[f"{level}s"] = 0
                continue
            if level == 60:
                raw = (
                    await session.execute(
                        sa.select(
                            metric_samples.c.series_id, metric_samples.c.ts, metric_samples.c.value
                        )
                        .where(
                            metric_samples.c.ts >= start * 1000, metric_samples.c.ts < end * 1000
                        )
                        .order_by(metric_samples.c.series_id, metric_samples.c.ts)
                    )
                ).all()
                built = buckets_from_raw([(r[0], r[1], r[2]) for r in raw], level)
            else:
                finer = (
                    await session.scalars(
                        sa.select(MetricRollup)
                        .where(
                            MetricRollup.resolution == SOURCE_OF[level],
                            MetricRollup.bucket >= start,
                            MetricRollup.bucket < end,
                        )
                        .order_by(MetricRollup.series_id, MetricRollup.bucket)
                    )
                ).all()
                built = buckets_from_rollups(finer, level)
            rows = [b.row(sid, level, bucket) for (sid, bucket), b in built.items()]
            if rows:
                insert = db.insert(MetricRollup)
                await session.execute(
                    insert.on_conflict_do_update(
                        index_elements=["series_id", "resolution", "bucket"],
                        set_={
                            c: insert.excluded[c]
                            for c in ("count", "sum", "min", "max", "last", "sketch")
                        },
                    ),
                    rows,
                )
            mark = db.insert(MetricRollupProgress).values(resolution=level, done_until=end)
            await session.execute(
                mark.on_conflict_do_update(index_elements=["resolution"], set_={"done_until": end})
            )
            written[f"{level}s"] = len(rows)
    return written


async def retain(db: Database, now: datetime, defaults: Retention) -> dict[str, int]:
    """Delete what each level's retention lets go; returns rows deleted per level."""
    now_s = int(now.timestamp())
    deleted: dict[str, int] = {}
    async with db.session() as session:
        done = await progress(session)
        overrides = {
            level: (
                await session.execute(sa.select(MetricSeries.id, column).where(column.is_not(None)))
            ).all()
            for level, column in OVERRIDE_COLUMN.items()
        }
        for level in (0, *RESOLUTIONS):
            # Never delete what the next level still has to roll up.
            next_level = {0: 60, 60: 300, 300: 3600}.get(level)
            safe = done.get(next_level, 0) if next_level else now_s
            overridden = [series_id for series_id, _ in overrides[level]]
            cutoff = min(now_s - defaults.of(level), safe)
            count = await _delete(session, level, cutoff, exclude=overridden)
            for series_id, seconds in overrides[level]:
                count += await _delete(
                    session, level, min(now_s - int(seconds or 0), safe), only=series_id
                )
            deleted["raw" if level == 0 else f"{level}s"] = count
    return deleted


async def _delete(
    session: AsyncSession,
    level: int,
    cutoff: int,
    *,
    exclude: Sequence[int] = (),
    only: int | None = None,
) -> int:
    if level == 0:
        query = sa.delete(metric_samples).where(metric_samples.c.ts < cutoff * 1000)
        series: Any = metric_samples.c.series_id
    else:
        query = sa.delete(MetricRollup).where(
            MetricRollup.resolution == level, MetricRollup.bucket + level <= cutoff
        )
        series = MetricRollup.series_id
    if only is not None:
        query = query.where(series == only)
    elif exclude:
        query = query.where(series.not_in(list(exclude)))
    result = await session.execute(query.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
