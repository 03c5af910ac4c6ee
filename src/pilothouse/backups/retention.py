"""GFS retention: which class a backup belongs to and when it expires (pure functions).

Only scheduled backups are promoted: the first completed scheduled backup of a calendar month
(UTC) is the monthly archive, otherwise the first of an ISO week is the weekly one, otherwise it
is a daily. Manual backups are class `manual`; pre-deployment backups are dailies that are never
promoted (they would otherwise take a monthly slot from the schedule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

GFS_CLASSES = ("daily", "weekly", "monthly", "manual")

#: Days each class is kept (seed 003: daily 30 days, weekly 6 months; seed 000: monthly
#: archives 12 months; seed 003: manual 1 year).
DEFAULT_RETENTION: dict[str, int] = {"daily": 30, "weekly": 183, "monthly": 365, "manual": 365}


def gfs_class(trigger: str, started_at: datetime, earlier: Iterable[datetime]) -> str:
    """The class of a backup; `earlier` holds the start times of the same target's completed
    scheduled backups (others are ignored)."""
    if trigger == "manual":
        return "manual"
    if trigger != "scheduled":
        return "daily"
    prior = [t for t in earlier if t < started_at]
    if not any((t.year, t.month) == (started_at.year, started_at.month) for t in prior):
        return "monthly"
    week = started_at.isocalendar()[:2]
    if not any(t.isocalendar()[:2] == week for t in prior):
        return "weekly"
    return "daily"


def expires_at(started_at: datetime, klass: str, policy: Mapping[str, int]) -> datetime:
    """When a backup of `klass` started at `started_at` may be deleted."""
    days = policy.get(klass, DEFAULT_RETENTION[klass])
    return started_at + timedelta(days=days)


def merged_policy(overrides: Mapping[str, int] | None) -> dict[str, int]:
    """The default retention with a target's overrides applied."""
    policy = dict(DEFAULT_RETENTION)
    policy.update(overrides or {})
    return policy
