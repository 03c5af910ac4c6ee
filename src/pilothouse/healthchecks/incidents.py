"""Incident decisions, pure: what a published service status change does to its incident, and
when a reminder is due. The monitor (monitor.py) carries them out.

One incident per service at a time. A service leaving healthy opens one (one alert); moving
between degraded and unhealthy while it is open changes its status without a message (escalate
or ease); coming back to healthy closes it (one recovery message). While it lasts, reminder n is
due n intervals after the alert; after a pause, missed reminders are skipped: one message, not a
burst.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

Action = Literal["open", "escalate", "ease", "recover", "none"]
SEVERITY = {"healthy": 0, "degraded": 1, "unhealthy": 2}
#: The actions that send a message to the channels.
NOTIFIES: frozenset[Action] = frozenset({"open", "recover"})


def incident_action(status: str, open_status: str | None) -> Action:
    """What the service's new published `status` does, given its open incident's status (None
    when there is no open incident)."""
    if status == "healthy":
        return "none" if open_status is None else "recover"
    if open_status is None:
        return "open"
    if SEVERITY.get(status, 2) > SEVERITY.get(open_status, 2):
        return "escalate"
    if SEVERITY.get(status, 2) < SEVERITY.get(open_status, 2):
        return "ease"
    return "none"


def reminder_due(notified_at: datetime, now: datetime, every: timedelta, sent: int) -> int | None:
    """The reminder count to record when a reminder is due now, else None. `sent` is the count
    recorded so far; missed reminders are counted but not sent (one message)."""
    if every <= timedelta(0):
        raise ValueError("the reminder interval must be positive")
    elapsed = int((now - notified_at) / every)
    return elapsed if elapsed > sent else None
