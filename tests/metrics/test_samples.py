"""write_samples: series found or created by name + tags, values appended in bulk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pilothouse.core.db import Database
from pilothouse.metrics.models import MetricSeries, metric_samples
from pilothouse.metrics.samples import Sample, canonical, write_samples, write_samples_in

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_canonical_sorts_tags() -> None:
    assert canonical("http_requests", {"b": "2", "a": "1"}) == 'http_requests{a="1",b="2"}'
    assert canonical("up", {}) == "up{}"


async def test_write_samples_creates_series_once_and_appends(db: Database) -> None:
    batch = [
        Sample(
            "latency_ms", {"service": "api", "endpoint": "/"}, 10.0 + i, T0 + timedelta(seconds=i)
        )
        for i in range(50)
    ] + [Sample("cpu", {"replica": "r1"}, 0.5, T0, unit="percent", source="infrastructure")]
    assert await write_samples(db, batch) == 51
    # Same series again (tags in another order): no new series rows.
    again = [
        Sample("latency_ms", {"endpoint": "/", "service": "api"}, 99.0, T0 + timedelta(hours=1))
    ]
    assert await write_samples(db, again) == 1
    async with db.session(write=False) as session:
        series = (await session.scalars(sa.select(MetricSeries).order_by(MetricSeries.name))).all()
        assert [(s.name, s.unit, s.source) for s in series] == [
            ("cpu", "percent", "infrastructure"),
            ("latency_ms", "", "application"),
        ]
        count = await session.scalar(sa.select(sa.func.count()).select_from(metric_samples))
        assert count == 52
        stored = await session.scalar(
            sa.select(metric_samples.c.value)
            .where(metric_samples.c.series_id == series[1].id)
            .order_by(metric_samples.c.ts.desc())
            .limit(1)
        )
        assert stored == 99.0


async def test_write_samples_skips_non_finite_and_empty(db: Database) -> None:
    assert await write_samples(db, []) == 0
    batch = [Sample("x", {}, float("nan"), T0), Sample("x", {}, float("inf"), T0)]
    assert await write_samples(db, batch) == 0


async def test_a_rolled_back_series_id_is_never_remembered(db: Database) -> None:
    """SQLite gives a rolled-back rowid to the next series: a remembered id would file the
    first series' samples under the second."""

    class Abort(Exception):
        pass

    try:
        async with db.session() as session:
            await write_samples_in(session, db.dialect, [Sample("gone", {}, 1.0, T0)])
            raise Abort
    except Abort:
        pass
    assert await write_samples(db, [Sample("other", {}, 2.0, T0)]) == 1
    assert await write_samples(db, [Sample("gone", {}, 3.0, T0)]) == 1
    async with db.session(write=False) as session:
        stored = (
            await session.execute(
                sa.select(MetricSeries.name, metric_samples.c.value)
                .join(metric_samples, metric_samples.c.series_id == MetricSeries.id)
                .order_by(metric_samples.c.value)
            )
        ).all()
    assert [tuple(r) for r in stored] == [("other", 2.0), ("gone", 3.0)]


def _copy_rows(data: bytes) -> list[tuple[int, int, float]]:
    """The rows of a binary COPY payload, read by PostgreSQL's documented layout."""
    import struct

    assert data[:11] == b"PGCOPY\n\xff\r\n\x00"
    flags, extension = struct.unpack("!ii", data[11:19])
    assert (flags, extension) == (0, 0)
    rows, at = [], 19
    while True:
        (fields,) = struct.unpack("!h", data[at : at + 2])
        if fields == -1:
            assert at + 2 == len(data)
            return rows
        assert fields == 3
        sid_len, sid, ts_len, ts, value_len, value = struct.unpack(
            "!iqiqid", data[at + 2 : at + 2 + 36]
        )
        assert (sid_len, ts_len, value_len) == (8, 8, 8)
        rows.append((sid, ts, value))
        at += 2 + 36


def test_copy_payload_holds_every_row_as_given() -> None:
    """The binary COPY payload: each row's three 8-byte fields as given, including a time
    before 1970, -0.0, a huge id and value; columns of unequal length are refused, not cut."""
    from pilothouse.metrics.samples import copy_binary_columns

    rows = [(1, 0, 0.0), (2**62, -86_400_000, -0.0), (7, 1_790_000_000_000, 1e308), (3, 5, -2.5)]
    series, times, values = (list(column) for column in zip(*rows, strict=True))
    decoded = _copy_rows(copy_binary_columns(series, times, values))
    assert decoded == rows
    assert str(decoded[1][2]) == "-0.0"
    assert _copy_rows(copy_binary_columns([], [], [])) == []
    with pytest.raises(ValueError, match="columns of 2, 1 and 1 rows"):
        copy_binary_columns([1, 2], [0], [0.0])
