"""Backup freshness (issue 13.8): is a target's newest verified backup recent enough?

A scheduled, enabled target is overdue when its newest verified backup (completed, integrity
check passed, not deleted) completed longer ago than its schedule's interval plus a grace
(PILOTHOUSE_BACKUP_FRESHNESS_GRACE_MINUTES, default 60); with no verified backup yet, the clock
starts when the target was created. The interval is the gap between the two cron fires around
that backup (24 h for a daily schedule).

Each overdue period has a deadline (`due_by`); the `backups.freshness` loop (once per slot
across workers) alerts once per target and deadline, claimed in job_slots, and when a verified
backup lands after an alerted deadline it sends one recovery notice (claimed the same way).
Pure rules first; the store and the channels at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.backups.models import Backup, BackupTarget
from pilothouse.backups.schedule import latest_slot, next_slot
from pilothouse.core.leases import JobSlot, Leases

#: Job names of the claims: an alert per (target, deadline), and its recovery notice.
OVERDUE_JOB = "backups.freshness"
RECOVERED_JOB = "backups.freshness.ok"
DEFAULT_GRACE = timedelta(minutes=60)


@dataclass(frozen=True)
class Freshness:
    last_verified_at: datetime | None
    age_seconds: int | None  # since the newest verified backup completed
    due_by: datetime | None  # None: no schedule, or the target is disabled
    overdue: bool


def interval(schedule: str, at: datetime) -> timedelta:
    """The gap between the cron fires around `at` (24 h for "0 2 * * *")."""
    before = latest_slot(schedule, at)
    return next_slot(schedule, before) - before


def deadline(schedule: str, since: datetime, grace: timedelta) -> datetime:
    """When a target whose newest verified backup is from `since` becomes overdue (whole
    seconds, so the same deadline is computed on every worker and store)."""
    return (since + interval(schedule, since) + grace).replace(microsecond=0)


def freshness(
    *,
    schedule: str | None,
    enabled: bool,
    created_at: datetime,
    last_verified_at: datetime | None,
    now: datetime,
    grace: timedelta,
) -> Freshness:
    age = int((now - last_verified_at).total_seconds()) if last_verified_at else None
    if not schedule or not enabled:
        return Freshness(last_verified_at, age, None, False)
    due_by = deadline(schedule, last_verified_at or created_at, grace)
    return Freshness(last_verified_at, age, due_by, now > due_by)


def describe_age(seconds: int | None) -> str:
    """'3.2 h' / '2 d 4 h' / 'never' (tables and alerts)."""
    if seconds is None:
        return "never"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


# -- the store ----------------------------------------------------------------------------------


async def last_verified(
    session: AsyncSession, target_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """Each target's newest verified backup's completion time."""
    if not target_ids:
        return {}
    rows = await session.execute(
        sa.select(Backup.target_id, sa.func.max(Backup.completed_at))
        .where(
            Backup.target_id.in_(list(target_ids)),
            Backup.status == "completed",
            Backup.integrity_check_passed.is_(True),
            Backup.deleted_at.is_(None),
            Backup.completed_at.is_not(None),
        )
        .group_by(Backup.target_id)
    )
    return {target_id: when for target_id, when in rows if when is not None}


async def of_targets(
    session: AsyncSession, targets: Sequence[BackupTarget], now: datetime, grace: timedelta
) -> dict[uuid.UUID, Freshness]:
    """The freshness of each target (API and CLI)."""
    newest = await last_verified(session, [t.id for t in targets])
    return {
        t.id: freshness(
            schedule=t.schedule,
            enabled=t.enabled,
            created_at=t.created_at,
            last_verified_at=newest.get(t.id),
            now=now,
            grace=grace,
        )
        for t in targets
    }


@dataclass(frozen=True)
class Notice:
    target: str
    message: dict[str, Any]


async def check(db: Any, leases: Leases, now: datetime, grace: timedelta) -> list[Notice]:
    """The alerts and recovery notices due now, each claimed (so sent once across workers):
    one per overdue target and deadline; one per alerted deadline once fresh again."""
    async with db.session(write=False) as session:
        targets = list(
            await session.scalars(
                sa.select(BackupTarget).where(
                    BackupTarget.deleted_at.is_(None),
                    BackupTarget.enabled.is_(True),
                    BackupTarget.schedule.is_not(None),
                )
            )
        )
        states = await of_targets(session, targets, now, grace)
        alerted = await session.execute(
            sa.select(JobSlot.key, JobSlot.slot).where(JobSlot.job == OVERDUE_JOB)
        )
        recovered = await session.execute(
            sa.select(JobSlot.key, JobSlot.slot).where(JobSlot.job == RECOVERED_JOB)
        )
        open_periods: dict[str, list[datetime]] = {}
        done = {(key, slot) for key, slot in recovered}
        for key, slot in alerted:
            if (key, slot) not in done:
                open_periods.setdefault(key, []).append(slot)
    notices: list[Notice] = []
    for target in targets:
        state = states[target.id]
        key = str(target.id)
        if state.overdue and state.due_by is not None:
            if await leases.claim_slot(OVERDUE_JOB, key, state.due_by):
                notices.append(Notice(target.name, overdue_message(target, state, grace)))
        elif not state.overdue and state.last_verified_at is not None:
            for due_by in open_periods.get(key, []):
                if state.last_verified_at > due_by and await leases.claim_slot(
                    RECOVERED_JOB, key, due_by
                ):
                    notices.append(Notice(target.name, recovered_message(target, state)))
    return notices


def overdue_message(target: BackupTarget, state: Freshness, grace: timedelta) -> dict[str, Any]:
    since = (
        f"since {state.last_verified_at:%Y-%m-%d %H:%M} UTC ({describe_age(state.age_seconds)} ago)"
        if state.last_verified_at
        else "yet"
    )
    minutes = int(grace.total_seconds() // 60)
    due = f"{state.due_by:%Y-%m-%d %H:%M} UTC" if state.due_by else "?"
    return {
        "event": "backup_overdue",
        "target": target.name,
        "schedule": target.schedule,
        "last_verified_at": state.last_verified_at.isoformat() if state.last_verified_at else None,
        "due_by": state.due_by.isoformat() if state.due_by else None,
        "text": f"backup target {target.name}: no verified backup {since}; its schedule "
        f"{target.schedule!r} plus {minutes} min grace ran out at {due}",
    }


def recovered_message(target: BackupTarget, state: Freshness) -> dict[str, Any]:
    assert state.last_verified_at is not None
    return {
        "event": "backup_fresh",
        "target": target.name,
        "last_verified_at": state.last_verified_at.isoformat(),
        "text": f"backup target {target.name}: a verified backup landed at "
        f"{state.last_verified_at:%Y-%m-%d %H:%M} UTC; backups are fresh again",
    }
