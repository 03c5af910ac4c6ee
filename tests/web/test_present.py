"""The dashboard's pure presentation rules (web/present.py): table tests and one property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.web import present

T0 = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("service_status", "health", "deploying", "shown"),
    [
        ("running", "healthy", False, "healthy"),
        ("running", "degraded", False, "degraded"),
        ("running", "unhealthy", False, "unhealthy"),
        ("running", "healthy", True, "deploying"),
        ("stopped", "unhealthy", True, "stopped"),  # stopped on purpose wins over everything
        ("running", None, False, "unknown"),  # never probed
        ("pending", None, True, "deploying"),
        ("failed", "bogus", False, "unknown"),
    ],
)
def test_grid_status(service_status: str, health: str | None, deploying: bool, shown: str) -> None:
    assert present.grid_status(service_status, health, deploying) == shown
    assert shown in present.GRID_STATUSES and shown in present.SYMBOL


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59, "59 s"), (60, "1 min"), (3599, "59 min"), (7200, "2 h"), (86400 * 3, "3 d")],
)
def test_age(seconds: int, text: str) -> None:
    assert present.age(T0, T0 + timedelta(seconds=seconds)) == text
    assert present.age(None, T0) == "never"
    assert present.age(T0 + timedelta(hours=1), T0) == "0 s"  # a clock skew is not negative


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, present.DASH), (100.0, "100 %"), (99.999, "99.99 %"), (99.5, "99.50 %"), (0, "0.00 %")],
)
def test_percent_never_rounds_up_to_a_perfect_month(value: float | None, text: str) -> None:
    assert present.percent(value) == text


def test_uptime_counts_overlapping_downtime_once() -> None:
    hour = timedelta(hours=1)
    spans = [(T0, T0 + hour), (T0 + hour / 2, T0 + 2 * hour), (T0 - 5 * hour, T0 - 4 * hour)]
    assert present.overlap(spans, T0, T0 + 10 * hour) == 7200
    assert present.uptime_percent(spans, T0, T0 + 10 * hour) == pytest.approx(80.0)
    assert present.uptime_percent([], T0, T0) is None


def test_day_bars() -> None:
    now = T0 + timedelta(hours=12)
    created = T0 - timedelta(days=2)
    bars = present.day_bars(
        [(T0 - timedelta(days=1), T0 - timedelta(days=1, hours=-12))], created, now
    )
    assert len(bars) == 90 and bars[-1].day == now.date()
    assert [b.level for b in bars[-4:]] == ["none", "up", "down", "up"]
    assert bars[-2].uptime == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("total", "per_page", "pages"), [(0, 50, 1), (50, 50, 1), (51, 50, 2), (1000, 50, 20)]
)
def test_pages(total: int, per_page: int, pages: int) -> None:
    assert present.pages(total, per_page) == pages


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-100, 200), st.integers(0, 100)).map(lambda p: (p[0], p[0] + p[1])),
        max_size=6,
    )
)
def test_uptime_stays_between_0_and_100(raw: list[tuple[int, int]]) -> None:
    spans = [(T0 + timedelta(minutes=a), T0 + timedelta(minutes=b)) for a, b in raw]
    value = present.uptime_percent(spans, T0, T0 + timedelta(minutes=100))
    assert value is not None and 0.0 <= value <= 100.0
