"""Rollups and retention on both stores, and queries that read across raw and rolled-up data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pilothouse.core.db import Database
from pilothouse.metrics.models import MetricRollup, MetricSeries, metric_samples
from pilothouse.metrics.query import aggregate
from pilothouse.metrics.samples import Sample, write_samples
from pilothouse.metrics.storage import Retention, retain, rollup

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


async def _load(db: Database, hours: int) -> None:
    """Two series (replica r1 and r2) with one sample every 10 s; r1 counts up, r2 is 1..100."""
    batch = []
    for i in range(hours * 360):
        at = T0 + timedelta(seconds=10 * i)
        batch.append(
            Sample("latency_ms", {"service": "api", "replica": "r1"}, float(i % 100 + 1), at)
        )
        batch.append(Sample("latency_ms", {"service": "api", "replica": "r2"}, 1000.0, at))
        batch.append(Sample("requests_total", {"service": "api"}, float(i * 2), at))
    for start in range(0, len(batch), 5000):
        await write_samples(db, batch[start : start + 5000])


async def _count(db: Database, table: sa.Table | type, **where: int) -> int:
    async with db.session(write=False) as session:
        query = sa.select(sa.func.count()).select_from(table)  # type: ignore[arg-type]
        if table is MetricRollup:
            query = query.where(MetricRollup.resolution == where["resolution"])
        return int(await session.scalar(query) or 0)


async def test_rollups_cascade_and_queries_agree(db: Database) -> None:
    await _load(db, hours=3)
    end = T0 + timedelta(hours=3)
    window = timedelta(hours=2)
    raw_figures = {
        stat: await aggregate(
            db, "latency_ms", {"replica": "r1"}, window=window, stat=stat, now=end
        )
        for stat in ("avg", "max", "p95", "count")
    }
    # Roll everything up (passes until nothing is left), then drop the raw samples.
    later = end + timedelta(hours=2)
    for _ in range(4):
        await rollup(db, later)
    assert await _count(db, MetricRollup, resolution=60) == 3 * 60 * 3
    assert await _count(db, MetricRollup, resolution=300) == 3 * 12 * 3
    assert await _count(db, MetricRollup, resolution=3600) == 3 * 3
    deleted = await retain(db, later, Retention(raw=3600))
    assert deleted["raw"] == 3 * 3 * 360
    assert await _count(db, metric_samples) == 0
    rolled = {
        stat: await aggregate(
            db, "latency_ms", {"replica": "r1"}, window=window, stat=stat, now=end
        )
        for stat in ("avg", "max", "p95", "count")
    }
    assert rolled["count"] == raw_figures["count"] == {"": 720.0}
    assert rolled["avg"][""] == pytest.approx(raw_figures["avg"][""])
    assert rolled["max"] == raw_figures["max"] == {"": 100.0}
    assert rolled["p95"][""] == pytest.approx(raw_figures["p95"][""], rel=0.02)
    by_replica = await aggregate(
        db, "latency_ms", {"service": "api"}, window=window, stat="avg", group_by="replica", now=end
    )
    assert by_replica["r2"] == 1000.0
    rate = await aggregate(db, "requests_total", window=timedelta(hours=1), stat="rate", now=end)
    assert rate[""] == pytest.approx(0.2, rel=0.01)  # +2 every 10 s


async def test_retention_keeps_unrolled_samples_and_honours_overrides(db: Database) -> None:
    await _load(db, hours=1)
    later = T0 + timedelta(days=3)
    # Nothing rolled up yet: old raw samples stay whatever the window.
    assert (await retain(db, later, Retention(raw=60)))["raw"] == 0
    for _ in range(3):
        await rollup(db, later)
    async with db.session() as session:
        await session.execute(
            sa.update(MetricSeries)
            .where(MetricSeries.name == "requests_total")
            .values(retention_raw=10 * 86400)
        )
    deleted = await retain(db, later, Retention(raw=86400))
    assert deleted["raw"] == 2 * 360  # the two latency series; requests_total keeps its own window
    assert await _count(db, metric_samples) == 360
    # Rollups expire by their own windows.
    gone = await retain(db, later + timedelta(days=30), Retention(raw=86400, m1=86400, m5=86400))
    assert gone["60s"] == 3 * 60 and gone["300s"] == 3 * 12 and gone["3600s"] == 0
