"""GFS classes and expiry (pure), and a year of daily backups under the cleanup rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.backups.retention import DEFAULT_RETENTION, expires_at, gfs_class, merged_policy
from pilothouse.backups.schedule import check_cron, due_slot, latest_slot, next_slot

D = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731


@pytest.mark.parametrize(
    ("trigger", "started", "earlier", "expected"),
    [
        ("manual", D(2026, 3, 1, 2), [], "manual"),
        ("pre_deployment", D(2026, 3, 1, 2), [], "daily"),
        ("scheduled", D(2026, 3, 1, 2), [], "monthly"),
        # 2026-03-02 is a Monday: first of its ISO week, but March already has one
        ("scheduled", D(2026, 3, 2, 2), [D(2026, 3, 1, 2)], "weekly"),
        ("scheduled", D(2026, 3, 3, 2), [D(2026, 3, 1, 2), D(2026, 3, 2, 2)], "daily"),
        # the 1st failed; the first backup that completed in the month is the archive
        ("scheduled", D(2026, 3, 2, 2), [D(2026, 2, 28, 2)], "monthly"),
        # later backups do not count
        ("scheduled", D(2026, 3, 1, 2), [D(2026, 3, 5, 2)], "monthly"),
    ],
)
def test_gfs_class(trigger: str, started: datetime, earlier: list[datetime], expected: str) -> None:
    assert gfs_class(trigger, started, earlier) == expected


@pytest.mark.parametrize(
    ("klass", "days"), [("daily", 30), ("weekly", 183), ("monthly", 365), ("manual", 365)]
)
def test_default_expiry(klass: str, days: int) -> None:
    start = D(2026, 1, 1, 2)
    assert expires_at(start, klass, DEFAULT_RETENTION) == start + timedelta(days=days)


def test_policy_overrides() -> None:
    assert merged_policy({"daily": 7})["daily"] == 7
    assert merged_policy({"daily": 7})["monthly"] == 365


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("0 2 * * *", None),
        ("0 4 * * L0", None),
        ("0 2 * *", "five-field"),
        ("61 2 * * *", "not a valid"),
        ("every day", "five-field"),
    ],
)
def test_check_cron(expr: str, problem: str | None) -> None:
    found = check_cron(expr)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_slots() -> None:
    now = D(2026, 11, 22, 12, 30)
    assert latest_slot("0 2 * * *", now) == D(2026, 11, 22, 2)
    assert latest_slot("0 2 * * *", D(2026, 11, 22, 2)) == D(2026, 11, 22, 2)
    assert next_slot("0 2 * * *", now) == D(2026, 11, 23, 2)
    # last Sunday of November 2026 is the 29th
    assert next_slot("0 4 * * L0", now) == D(2026, 11, 29, 4)
    week = timedelta(days=7)
    assert due_slot("0 2 * * *", now, since=D(2026, 11, 1), window=week) == D(2026, 11, 22, 2)
    # a schedule created after the slot does not run it
    assert due_slot("0 2 * * *", now, since=D(2026, 11, 22, 3), window=week) is None
    # a slot older than the catch-up window is skipped
    assert due_slot("0 2 * * *", now, since=D(2026, 1, 1), window=timedelta(hours=1)) is None


@settings(max_examples=30, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    failures=st.sets(st.integers(min_value=0, max_value=364), max_size=60),
    cleanup_skips=st.sets(st.integers(min_value=0, max_value=364), max_size=30),
)
def test_a_year_of_daily_backups(
    start: datetime, failures: set[int], cleanup_skips: set[int]
) -> None:
    """Simulate 365 days of 02:00 backups (some fail) and the 03:00 cleanup (some days it does
    not run). After every cleanup: nothing past its expiry survives; every successful backup of
    the last 30 days does; every month whose first backup is under a year old keeps its monthly
    archive; every ISO week whose first backup is under 6 months old keeps a weekly (or the
    monthly that opened it)."""
    first = start.replace(hour=2, minute=0, second=0, microsecond=0, tzinfo=UTC)
    kept: dict[datetime, tuple[str, datetime]] = {}  # started -> (class, expires)
    completed: list[datetime] = []
    first_of_month: dict[tuple[int, int], datetime] = {}
    first_of_week: dict[tuple[int, int], datetime] = {}
    for day in range(365):
        at = first + timedelta(days=day)
        if day not in failures:
            # only the same month and the week before matter to the rule
            klass = gfs_class("scheduled", at, completed[-40:])
            completed.append(at)
            kept[at] = (klass, expires_at(at, klass, DEFAULT_RETENTION))
            first_of_month.setdefault((at.year, at.month), at)
            first_of_week.setdefault(at.isocalendar()[:2], at)
            if klass == "monthly":
                assert first_of_month[(at.year, at.month)] == at
        now = at + timedelta(hours=1)
        if day in cleanup_skips:
            continue
        kept = {s: v for s, v in kept.items() if v[1] > now}
        for when in completed[-31:]:
            if now - when < timedelta(days=30):
                assert when in kept
        months = {(s.year, s.month) for s, (klass, _) in kept.items() if klass == "monthly"}
        for month, when in first_of_month.items():
            if now - when < timedelta(days=365):
                assert month in months
        weeks = {s.isocalendar()[:2] for s, (k, _) in kept.items() if k in ("weekly", "monthly")}
        for week, when in first_of_week.items():
            if now - when < timedelta(days=183):
                assert week in weeks
    # bounded: about 30 dailies + 26 weeklies + 12 monthlies, never the whole year
    assert len(kept) <= 30 + 27 + 13
