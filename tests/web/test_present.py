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


@pytest.mark.parametrize(
    ("status", "actions"),
    [
        ("open", ("accept", "false-positive")),
        ("accepted_risk", ("false-positive", "reopen")),
        ("false_positive", ("reopen",)),
        ("resolved", ("reopen",)),
        ("bogus", ()),
    ],
)
def test_triage_actions_follow_the_findings_transition_table(
    status: str, actions: tuple[str, ...]
) -> None:
    assert present.triage_actions(status) == actions
    assert all(a in present.TRIAGE_LABEL for a in actions)


@pytest.mark.parametrize(
    ("text", "until"),
    [
        ("", None),
        ("  ", None),
        (None, None),
        ("2027-01-31", datetime(2027, 2, 1, tzinfo=UTC)),  # the end of that day, UTC
        (" 2026-12-31 ", datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_until_of_a_date_field(text: str | None, until: datetime | None) -> None:
    assert present.until_of(text) == until


@pytest.mark.parametrize("text", ["tomorrow", "2027-02-30", "31/01/2027"])
def test_until_of_refuses_what_is_not_a_date(text: str) -> None:
    with pytest.raises(ValueError):
        present.until_of(text)


def _day(back: int, uptime: float | None, level: str) -> present.DayBar:
    return present.DayBar(T0.date() - timedelta(days=back), uptime, level)


@pytest.mark.parametrize(
    ("uptime", "level", "height"),
    [
        (100.0, "up", 60.0),  # full
        (95.0, "down", 30.0),  # half way between the floor (90 %) and 100 %
        (50.0, "down", 2.0),  # below the floor: a stub, still drawn
        (90.0, "down", 2.0),
        (None, "none", 2.0),  # no data: a stub
    ],
)
def test_uptime_bars_heights(uptime: float | None, level: str, height: float) -> None:
    (bar,) = present.uptime_bars([_day(0, uptime, level)], width=600, height=60)
    assert bar.height == pytest.approx(height)
    assert bar.y == pytest.approx(60 - height)  # bars stand on the bottom edge
    assert bar.level == level
    assert bar.label.startswith(str(T0.date()))
    assert ("no data" in bar.label) == (uptime is None)


def test_uptime_bars_side_by_side_oldest_first() -> None:
    days = [_day(back, 100.0, "up") for back in range(29, -1, -1)]
    bars = present.uptime_bars(days, width=600, height=60)
    assert [b.x for b in bars] == pytest.approx([i * 20.0 for i in range(30)])
    assert all(0 < b.width < 20 for b in bars)
    assert bars[-1].label.startswith(str(T0.date())) and present.uptime_bars([]) == []


def test_uptime_summary_names_the_worst_day() -> None:
    days = [_day(2, 100.0, "up"), _day(1, 98.5, "down"), _day(0, 99.5, "partial")]
    text = present.uptime_summary(days)
    assert "last 3 days" in text and "2 day(s) below 99.9 %" in text
    assert f"lowest 98.50 % on {T0.date() - timedelta(days=1)}" in text
    assert present.uptime_summary([_day(0, None, "none")]) == "No uptime data in the last 1 days."


def test_badges_link_to_the_status_page() -> None:
    status, uptime = present.badges("https://ph.example/", "1234", "prod", "web")
    assert status.image == "https://ph.example/badge/1234/status.svg"
    assert uptime.image == "https://ph.example/badge/1234/uptime.svg"
    page = "https://ph.example/status/prod/web"
    assert status.markdown == f"[![web status]({status.image})]({page})"
    assert uptime.html == f'<a href="{page}"><img src="{uptime.image}" alt="web uptime"></a>'
