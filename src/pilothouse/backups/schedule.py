"""Cron schedules (UTC): validation, the latest due slot, the next one (pure functions).

Standard five-field cron, plus croniter's `L<weekday>` for "last <weekday> of the month"
(the drill default `0 4 * * L0` is 04:00 UTC on the last Sunday of each month).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import croniter

DEFAULT_BACKUP = "0 2 * * *"
DEFAULT_DRILL = "0 4 * * L0"
DEFAULT_CLEANUP = "0 3 * * *"


def check_cron(expr: str) -> str | None:
    """None when `expr` is a valid five-field cron expression, otherwise why not."""
    if len(expr.split()) != 5:
        return "must be a five-field cron expression (minute hour day month weekday), UTC"
    if not croniter.is_valid(expr):
        return "is not a valid cron expression"
    return None


def latest_slot(expr: str, now: datetime) -> datetime:
    """The most recent time at or before `now` that `expr` fires."""
    start = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
    return croniter(expr, start).get_prev(datetime).astimezone(UTC)


def next_slot(expr: str, now: datetime) -> datetime:
    """The first time after `now` that `expr` fires."""
    return croniter(expr, now.astimezone(UTC)).get_next(datetime).astimezone(UTC)


def due_slot(expr: str, now: datetime, *, since: datetime, window: timedelta) -> datetime | None:
    """The slot to run now, if any: the latest one, when it is after `since` (the schedule's
    creation) and not older than `window` (a worker that was down runs the missed slot once)."""
    slot = latest_slot(expr, now)
    if slot <= since or now - slot > window:
        return None
    return slot


def development_refusal(
    environment_type: str | None, schedule: str | None, *, force: bool
) -> str | None:
    """Seed 000: "dev doesn't back up". Why a scheduled backup of a target in an environment of
    `environment_type` is refused (the 422's rule on `schedule`), or None. No schedule, no
    environment, a non-development environment, or `force`: allowed."""
    if not schedule or environment_type != "development" or force:
        return None
    return (
        "scheduled backups are off for development environments (seed 000: development is not "
        "backed up); give an empty schedule, or force: true (--force) to schedule them anyway"
    )
