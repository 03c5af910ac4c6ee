"""Reading a window: which levels cover which seconds (pure), sketches, rates."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.metrics import sketch
from pilothouse.metrics.query import exact_quantile, increase, plan, rolling

H = 3600
DAY = 86400


@pytest.mark.parametrize(
    ("start", "end", "done", "kept", "expected"),
    [
        # Nothing rolled up yet: all raw.
        (1000, 2000, {}, {}, [(0, 1000, 2000)]),
        # Window after the last rollup: raw.
        (10 * H + 30, 11 * H, {60: 10 * H}, {}, [(0, 10 * H + 30, 11 * H)]),
        # Aligned hour fully rolled up at every level: the hourly bucket, then raw.
        (
            10 * H,
            12 * H + 600,
            {60: 12 * H, 300: 12 * H, 3600: 11 * H},
            {},
            [(3600, 10 * H, 11 * H), (300, 11 * H, 12 * H), (0, 12 * H, 12 * H + 600)],
        ),
        # Unaligned start: raw to the minute, 1-minute to 5 minutes, 5-minute to the hour.
        (
            10 * H + 30,
            12 * H,
            {60: 12 * H, 300: 12 * H, 3600: 12 * H},
            {},
            [
                (0, 10 * H + 30, 10 * H + 60),
                (60, 10 * H + 60, 10 * H + 300),
                (300, 10 * H + 300, 11 * H),
                (3600, 11 * H, 12 * H),
            ],
        ),
        # Raw samples gone before the start: the whole 1-minute bucket is read.
        (
            10 * H + 30,
            10 * H + 120,
            {60: 12 * H, 300: 12 * H, 3600: 12 * H},
            {0: 11 * H},
            [(60, 10 * H, 10 * H + 120)],
        ),
        # Finer levels expired: hourly only for the old part.
        (
            0,
            2 * H,
            {60: 3 * H, 300: 3 * H, 3600: 3 * H},
            {0: 3 * H, 60: 3 * H, 300: 3 * H},
            [(3600, 0, 2 * H)],
        ),
    ],
)
def test_plan(
    start: int,
    end: int,
    done: dict[int, int],
    kept: dict[int, int],
    expected: list[tuple[int, int, int]],
) -> None:
    assert plan(start, end, done, kept) == expected


@given(
    st.integers(0, 3 * DAY),
    st.integers(1, 2 * DAY),
    st.integers(0, 4 * DAY),
)
def test_plan_covers_the_window_in_order(start: int, length: int, rolled: int) -> None:
    end = start + length
    done = {60: rolled - rolled % 60, 300: rolled - rolled % 300, 3600: rolled - rolled % 3600}
    segments = plan(start, end, done, {})
    assert segments[0][1] <= start
    assert segments[-1][2] >= end
    for (_, _, hi), (_, lo, _) in itertools.pairwise(segments):
        assert hi == lo
    for level, lo, hi in segments:
        if level:
            assert lo % level == 0 and hi % level == 0 and hi <= done[level]


def test_sketch_round_trip_and_merge() -> None:
    a = sketch.new_sketch(float(v) for v in range(1, 1001))
    b = sketch.loads(sketch.dumps(a))
    assert b.count == 1000 and b.sum == a.sum
    p95 = sketch.quantile(b, 0.95)
    assert p95 is not None and abs(p95 - 950) / 950 < 0.02
    both = sketch.merged([b, sketch.loads(sketch.dumps(sketch.new_sketch([-5.0, 0.0, 2000.0])))])
    assert both.count == 1003
    assert sketch.quantile(both, 1.0) == pytest.approx(2000, rel=0.02)
    assert sketch.quantile(both, 0.0) == pytest.approx(-5, rel=0.02)
    with pytest.raises(ValueError):
        sketch.loads(b"\x09")


@pytest.mark.parametrize(
    ("pairs", "grown"),
    [
        ([], 0.0),
        ([(5.0, 5.0, 5.0)], 0.0),
        ([(5.0, 5.0, 5.0), (7.0, 7.0, 7.0), (10.0, 10.0, 10.0)], 5.0),
        # a reset after 7
        ([(5.0, 5.0, 5.0), (7.0, 7.0, 7.0), (1.0, 1.0, 1.0), (4.0, 4.0, 4.0)], 2.0 + 1.0 + 3.0),
        # buckets: 10 inside the first, 2 between, 5 inside the second
        ([(0.0, 10.0, 10.0), (12.0, 17.0, 17.0)], 17.0),
        # a reset inside a bucket: up 0->8, then from 0 to 3
        ([(0.0, 8.0, 3.0)], 11.0),
    ],
)
def test_increase_handles_resets(pairs: list[tuple[float, float, float]], grown: float) -> None:
    assert increase(pairs) == grown


def test_exact_quantile_and_rolling() -> None:
    assert exact_quantile([], 0.5) is None
    assert exact_quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert exact_quantile([1.0, 2.0], 0.95) == pytest.approx(1.95)
    points = {0: (1, 10.0), 60: (1, 20.0), 120: (2, 60.0), 600: (1, 5.0)}
    assert rolling(points, 60) == [(0, 10.0), (60, 15.0), (120, 22.5), (600, 5.0)]
