"""Certificate rules as pure functions: status (seed 003), expiry alert levels, health effect,
renewal window and backoff. The store and the network are elsewhere (service.py, observe.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pilothouse.core.statemachine import Table, check_transition

#: Seed 003 statuses. `pending`: not yet seen (or not yet issued); `active`: valid now;
#: `expired`: past its not-after; `failed`: the handshake or the chain failed, or issuance failed.
TRANSITIONS: Table = {
    "pending": frozenset({"active", "expired", "failed"}),
    "active": frozenset({"expired", "failed", "pending"}),
    "expired": frozenset({"active", "failed", "pending"}),
    "failed": frozenset({"active", "expired", "pending"}),
}


def transition(from_status: str, to_status: str) -> None:
    """Raise InvalidTransition (409, saying from what to what) unless the table allows it."""
    if from_status != to_status:
        check_transition(TRANSITIONS, "certificate", from_status, to_status)


def days_left(expires_at: datetime, now: datetime) -> int:
    """Whole days until expiry, rounded down (6 days 23 hours is 6); negative once expired."""
    return (expires_at - now) // timedelta(days=1)


def status_of(
    *, handshake_ok: bool, chain_valid: bool | None, expires_at: datetime | None, now: datetime
) -> str:
    """A certificate's status from its latest handshake: expired beats everything (the
    certificate is known), a failed handshake or an untrusted chain is failed, else active."""
    if expires_at is not None and expires_at <= now:
        return "expired"
    if not handshake_ok or expires_at is None or chain_valid is False:
        return "failed"
    return "active"


def normalize_levels(levels: Sequence[int]) -> list[int]:
    """Alert levels in days: distinct, positive, at most 365, largest first."""
    for level in levels:
        if not 1 <= int(level) <= 365:
            raise ValueError(f"alert level {level} is not between 1 and 365 days")
    return sorted({int(level) for level in levels}, reverse=True)


def due_level(days: int, levels: Sequence[int]) -> int | None:
    """The alert level reached with `days` left: the smallest level at or above `days` (a
    certificate first seen with 6 days left is at the 7-day level, and only there: the 30- and
    14-day alerts would say less than the 7-day one). 0 once expired; None above every level."""
    if days < 0:
        return 0
    reached = [level for level in levels if days <= level]
    return min(reached) if reached else None


def renewal_due(
    *,
    expires_at: datetime | None,
    renew_before_days: int,
    next_attempt: datetime | None,
    now: datetime,
) -> bool:
    """An auto-renewed certificate is due when it is inside its renewal window (or has none yet)
    and its backoff, if any, has passed."""
    if next_attempt is not None and now < next_attempt:
        return False
    if expires_at is None:
        return True
    return expires_at - now <= timedelta(days=renew_before_days)


def backoff(failures: int, *, base: float = 60.0, cap: float = 6 * 3600.0) -> timedelta:
    """Wait after the `failures`-th failure in a row: base, 2x, 4x ... capped."""
    return timedelta(seconds=min(base * 2 ** max(failures - 1, 0), cap))
