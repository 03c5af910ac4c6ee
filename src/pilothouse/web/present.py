"""Pure presentation rules of the dashboard: what a grid cell says, ages, uptime bars.

Each is a function of plain values with a table test (tests/web/test_present.py). Colour is
never the only signal: every status comes with a word and a symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

from pilothouse.findings import triage

#: Shown for a figure that is not known (an en dash).
DASH = "\u2013"

#: What a grid cell may show, in the order a filter lists them.
GRID_STATUSES = ("healthy", "degraded", "unhealthy", "deploying", "stopped", "unknown")

#: The symbol shown next to each status word (for those who cannot tell the colours apart).
SYMBOL = {
    "healthy": "✓",
    "degraded": "!",
    "unhealthy": "✗",
    "deploying": "↻",
    "stopped": "■",
    "unknown": "?",
    "overdue": "!",
    "open": "!",
    "closed": "✓",
}


def grid_status(service_status: str, health: str | None, deploying: bool) -> str:
    """The one word a service's cell shows: stopped on purpose wins, then a rollout under way,
    then the derived health (three states), else unknown (not probed yet)."""
    if service_status in ("stopped", "deleted"):
        return "stopped"
    if deploying:
        return "deploying"
    if health in ("healthy", "degraded", "unhealthy"):
        return health
    return "unknown"


def age(then: datetime | None, now: datetime) -> str:
    """`3 min`, `5 h`, `2 d` (the largest unit that fits), `never` for None."""
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def percent(value: float | None) -> str:
    """Uptime as the dashboard prints it: `99.95 %`, a dash when unknown; never rounds up to 100."""
    if value is None:
        return DASH
    if value >= 100:
        return "100 %"
    truncated = int(value * 100) / 100
    return f"{truncated:.2f} %"


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def overlap(intervals: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    """Seconds of [start, end) covered by the intervals (overlaps counted once)."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end)
    total = 0.0
    cur_a: datetime | None = None
    cur_b: datetime | None = None
    for a, b in clipped:
        if cur_b is None or a > cur_b:
            if cur_a is not None and cur_b is not None:
                total += (cur_b - cur_a).total_seconds()
            cur_a, cur_b = a, b
        elif b > cur_b:
            cur_b = b
    if cur_a is not None and cur_b is not None:
        total += (cur_b - cur_a).total_seconds()
    return total


def uptime_percent(
    downtime: list[tuple[datetime, datetime]], start: datetime, end: datetime
) -> float | None:
    """Share of [start, end) not covered by downtime, in percent; None for an empty span."""
    span = (end - start).total_seconds()
    if span <= 0:
        return None
    return 100.0 * (1 - overlap(downtime, start, end) / span)


@dataclass(frozen=True)
class DayBar:
    """One day of a status page's 90-day bar."""

    day: date
    uptime: float | None  # None: before the service existed (no data)
    level: str  # "up" (>= 99.9), "partial" (>= 99), "down", "none"


def day_bars(
    downtime: list[tuple[datetime, datetime]],
    created: datetime,
    now: datetime,
    days: int = 90,
) -> list[DayBar]:
    """The last `days` days (oldest first, today last) with each day's uptime."""
    today = now.astimezone(UTC).date()
    bars = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = min(start + timedelta(days=1), now)
        start = max(start, created)
        value = uptime_percent(downtime, start, end) if end > start else None
        if value is None:
            level = "none"
        elif value >= 99.9:
            level = "up"
        elif value >= 99.0:
            level = "partial"
        else:
            level = "down"
        bars.append(DayBar(day, value, level))
    return bars


def pages(total: int, per_page: int) -> int:
    """How many pages `total` rows fill (at least one)."""
    return max(1, -(-total // per_page))


# -- triage buttons ----------------------------------------------------------------------------

#: What each triage button says (the findings capability's actions).
TRIAGE_LABEL = {"accept": "Accept risk", "false-positive": "False positive", "reopen": "Reopen"}


def triage_actions(status: str) -> tuple[str, ...]:
    """The triage actions a finding in `status` can take (the capability's transition table),
    in button order; none for a status nothing leads out of by hand."""
    allowed = triage.TABLE.get(status, frozenset())
    return tuple(a for a in TRIAGE_LABEL if triage.ACTIONS[a] in allowed)


def until_of(text: str | None) -> datetime | None:
    """An acceptance's expiry from a date field (`YYYY-MM-DD`): the end of that day, UTC (so
    accepting "until today" lasts the day). None when empty; ValueError when not a date."""
    if text is None or not text.strip():
        return None
    day = date.fromisoformat(text.strip())
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


# -- the service page's uptime chart ---------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One day's bar in the uptime chart's SVG (user units; the y axis points down)."""

    x: float
    y: float
    width: float
    height: float
    level: str  # DayBar.level
    label: str  # "2026-11-30: 99.95 %" (each bar's <title>)


#: The chart's scale: an empty bar is this uptime or less, a full one 100 %.
CHART_FLOOR = 90.0


def uptime_bars(days: list[DayBar], width: float = 600, height: float = 60) -> list[Bar]:
    """Bars of `days` (oldest first) side by side across `width`: height grows from
    `CHART_FLOOR` % (a 2-unit stub, so a down day is still drawn) to 100 % (full); a day
    without data is a 2-unit grey stub. Each carries its day and figure as its label."""
    if not days:
        return []
    slot = width / len(days)
    gap = min(2.0, slot / 4)
    bars = []
    for i, d in enumerate(days):
        if d.uptime is None:
            h = 2.0
            label = f"{d.day}: no data"
        else:
            share = (d.uptime - CHART_FLOOR) / (100.0 - CHART_FLOOR)
            h = max(2.0, height * min(1.0, max(0.0, share)))
            label = f"{d.day}: {percent(d.uptime)}"
        bars.append(Bar(i * slot, height - h, slot - gap, h, d.level, label))
    return bars


def uptime_summary(days: list[DayBar]) -> str:
    """The chart's description for screen readers: the span, days below 99.9 %, the worst."""
    known = [d for d in days if d.uptime is not None]
    if not known:
        return f"No uptime data in the last {len(days)} days."
    worst = min(known, key=lambda d: (d.uptime, d.day))
    below = sum(1 for d in known if d.level != "up")
    return (
        f"Daily uptime over the last {len(days)} days, oldest first: {below} day(s) below "
        f"99.9 %; the lowest {percent(worst.uptime)} on {worst.day}."
    )


# -- embeddable badges -----------------------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    """One embeddable badge: its image URL and the snippets that link it to the status page."""

    kind: str  # "status" or "uptime"
    image: str
    markdown: str
    html: str


def badges(base: str, service_id: str, environment: str, name: str) -> list[Badge]:
    """The service's status and uptime badges (`/badge/{id}/{kind}.svg`, by id so the name
    need not be unique) as Markdown and HTML that link to its public status page
    (`/status/{environment}/{name}`); `base` is the site's URL."""
    root = base.rstrip("/")
    page = f"{root}/status/{quote(environment, safe='')}/{quote(name, safe='')}"
    out = []
    for kind in ("status", "uptime"):
        image = f"{root}/badge/{service_id}/{kind}.svg"
        alt = f"{name} {kind}"
        out.append(
            Badge(
                kind,
                image,
                f"[![{alt}]({image})]({page})",
                f'<a href="{page}"><img src="{image}" alt="{alt}"></a>',
            )
        )
    return out
