"""Uptime arithmetic (seed 003): examples, then properties over generated timelines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.healthchecks.uptime import Check, month_bounds, p95, report, subtract

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def every(
    seconds: int, count: int, outcome: str, start: datetime = T0, ms: float = 50
) -> list[Check]:
    return [Check(start + timedelta(seconds=i * seconds), outcome, ms) for i in range(count)]  # type: ignore[arg-type]


def test_month_bounds() -> None:
    assert month_bounds("2026-11") == (T0, datetime(2026, 12, 1, tzinfo=UTC))
    assert month_bounds("2026-12")[1] == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="2026-11"):
        month_bounds("November")


def test_all_up_is_100_percent() -> None:
    start, end = month_bounds("2026-11")
    r = report(every(60, 100, "up"), start, end)
    assert r.uptime_percent == 100.0 and r.downtime_minutes == 0 and r.sla_met


def test_unavailability_counts_only_beyond_30_seconds() -> None:
    start, end = T0, T0 + timedelta(hours=1)
    short = every(10, 3, "down", T0 + timedelta(minutes=5)) + every(
        10, 10, "up", T0 + timedelta(minutes=5, seconds=30)
    )
    assert report(short, start, end).downtime_minutes == 0  # 30 s exactly is not "more than 30 s"
    longer = every(10, 4, "down", T0 + timedelta(minutes=5)) + every(
        10, 10, "up", T0 + timedelta(minutes=5, seconds=40)
    )
    assert report(longer, start, end).downtime_minutes == pytest.approx(40 / 60)


def test_5xx_majority_counts_only_beyond_one_minute() -> None:
    start, end = T0, T0 + timedelta(hours=1)
    one_minute = every(10, 6, "error", T0 + timedelta(minutes=10)) + every(
        10, 6, "up", T0 + timedelta(minutes=11)
    )
    assert report(one_minute, start, end).downtime_minutes == 0
    three = every(10, 18, "error", T0 + timedelta(minutes=10)) + every(
        10, 6, "up", T0 + timedelta(minutes=13)
    )
    assert report(three, start, end).downtime_minutes == pytest.approx(3)
    # a minority of 5xx in each minute is not downtime
    mixed = [
        c
        for i in range(18)
        for c in (
            Check(T0 + timedelta(minutes=10, seconds=i * 10), "error" if i % 3 == 0 else "up"),
        )
    ]
    assert report(mixed, start, end).downtime_minutes == 0


def test_maintenance_is_not_downtime_and_sla_alert() -> None:
    start, end = month_bounds("2026-11")
    outage = every(10, 360, "down", T0 + timedelta(days=3)) + every(
        10, 3, "up", T0 + timedelta(days=3, hours=1)
    )
    plain = report(outage, start, end)
    assert plain.downtime_minutes == pytest.approx(60)
    assert plain.uptime_percent == pytest.approx(100 * (43200 - 60) / 43200)
    assert plain.sla_met  # 99.86% >= 99.5%
    assert not report(outage, start, end, sla_target=99.9).sla_met
    window = (T0 + timedelta(days=3), T0 + timedelta(days=3, minutes=45))
    assert report(outage, start, end, maintenance=[window]).downtime_minutes == pytest.approx(15)


def test_response_times() -> None:
    checks = [Check(T0 + timedelta(seconds=i), "up", float(i + 1)) for i in range(100)]
    r = report(checks, T0, T0 + timedelta(hours=1))
    assert r.p95_ms == 95 and r.avg_ms == pytest.approx(50.5)
    assert p95([]) is None


outcomes = st.lists(st.sampled_from(["up", "error", "down"]), min_size=1, max_size=300)


@given(outcomes, st.integers(min_value=1, max_value=90))
@settings(max_examples=200, deadline=None)
def test_uptime_properties(sequence: list[str], spacing: int) -> None:
    checks = [Check(T0 + timedelta(seconds=i * spacing), o) for i, o in enumerate(sequence)]  # type: ignore[arg-type]
    end = T0 + timedelta(seconds=len(sequence) * spacing + 60)
    r = report(checks, T0, end)
    assert 0.0 <= r.uptime_percent <= 100.0
    assert r.downtime_minutes <= r.minutes + 1e-9
    if set(sequence) == {"up"}:
        assert r.uptime_percent == 100.0
    # everything under maintenance: nothing counts
    assert report(checks, T0, end, maintenance=[(T0, end)]).downtime_minutes == 0
    # making one check worse never improves uptime
    worse = list(checks)
    worse[len(worse) // 2] = Check(worse[len(worse) // 2].at, "down")
    assert report(worse, T0, end).uptime_percent <= r.uptime_percent + 1e-9


@given(
    st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 200)), max_size=20),
    st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 200)), max_size=20),
)
def test_subtract_never_grows(spans: list[tuple[int, int]], holes: list[tuple[int, int]]) -> None:
    def iv(pairs: list[tuple[int, int]]) -> list[tuple[datetime, datetime]]:
        return [(T0 + timedelta(seconds=a), T0 + timedelta(seconds=a + n)) for a, n in pairs]

    def total(ivs: list[tuple[datetime, datetime]]) -> float:
        from pilothouse.healthchecks.uptime import merge

        return sum((b - a).total_seconds() for a, b in merge(ivs))

    left = subtract(iv(spans), iv(holes))
    assert total(left) <= total(iv(spans))
    for a, b in left:
        assert all(not (a < hb and ha < b) for ha, hb in iv(holes))
