"""Stopped time is not downtime (healthchecks/uptime.py stopped_intervals + summarize)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.healthchecks import uptime

T0 = datetime(2026, 11, 1, tzinfo=UTC)
END = T0 + timedelta(days=30)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ([], []),
        ([(at(10), "running")], []),
        ([(at(10), "stopped"), (at(20), "scheduled")], [(at(10), at(20))]),
        ([(at(10), "stopped")], [(at(10), END)]),  # still stopped at the end
        ([(at(-60), "stopped"), (at(5), "scheduled")], [(T0, at(5))]),  # stopped before start
        ([(at(-60), "stopped"), (at(-5), "scheduled")], []),
        (
            [(at(1), "stopped"), (at(2), "scheduled"), (at(3), "running"), (at(4), "stopped")],
            [(at(1), at(2)), (at(4), END)],
        ),
        ([(at(1), "stopped"), (at(2), "deleted")], [(at(1), at(2))]),
    ],
)
def test_stopped_intervals(
    changes: list[tuple[datetime, str]], expected: list[tuple[datetime, datetime]]
) -> None:
    assert uptime.stopped_intervals(changes, T0, END) == expected


def test_an_outage_running_into_a_stop_counts_only_until_the_stop() -> None:
    """The last probes before a stop failed; the next answer came after the start: only the
    time the service was meant to be up counts."""
    checks = [uptime.Check(at(0), "down"), uptime.Check(at(70), "up")]
    stopped = uptime.stopped_intervals([(at(10), "stopped"), (at(60), "scheduled")], T0, END)
    with_stop = uptime.summarize(
        T0, END, uptime.downtime(checks, END), stopped=stopped, checks=len(checks)
    )
    without = uptime.summarize(T0, END, uptime.downtime(checks, END), checks=len(checks))
    assert without.downtime_minutes == pytest.approx(70)
    assert with_stop.downtime_minutes == pytest.approx(20)
    assert with_stop.stopped_minutes == pytest.approx(50)
    assert with_stop.uptime_percent > without.uptime_percent


minutes = st.floats(min_value=0, max_value=60 * 24 * 30, allow_nan=False)


@given(
    outages=st.lists(st.tuples(minutes, minutes), max_size=6),
    stops=st.lists(st.tuples(minutes, minutes), max_size=4),
)
def test_being_stopped_never_lowers_uptime(
    outages: list[tuple[float, float]], stops: list[tuple[float, float]]
) -> None:
    down = [(at(min(a, b)), at(max(a, b))) for a, b in outages]
    stopped = [(at(min(a, b)), at(max(a, b))) for a, b in stops]
    plain = uptime.summarize(T0, END, down)
    excused = uptime.summarize(T0, END, down, stopped=stopped)
    assert excused.uptime_percent >= plain.uptime_percent
    assert excused.downtime_minutes <= plain.downtime_minutes + 1e-9
