"""Whether the store can be reached: which errors mean it cannot, and its state over time.

`unreachable(exc)` is the one place that decides whether an exception means "the store cannot be
reached" (and says why, in a few words that never carry a host's secret or a statement). It
looks only at errors raised through SQLAlchemy, i.e. by the store's own engines: a raw driver
error comes from another database (a dependency probe, a backup target) and is not the store's.
The store is unreachable when
- PostgreSQL (psycopg) fails at connection level: no SQLSTATE (refused, timed out, lost), class 08
  (connection exception), 57P01-57P03 (shutting down, crashed, starting up), 53300 (too many
  connections);
- SQLite cannot open its file ("unable to open database file", a disk or directory gone);
- SQLAlchemy reports that the error invalidated the connection (a disconnect).
Errors of one statement (a deadlock, a cancelled query, a constraint) are not an outage.

`StoreHealth` records the state of one store for this process: `mark_down()` and `mark_up()`
log one line when the state changes ("store unreachable", "store reachable again"), never one
per failed call, and keep the recent outages so that later decisions can name them as a cause.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
import sqlalchemy.exc as sa_exc

from pilothouse.core.clock import utcnow
from pilothouse.core.logging import get_logger

log = get_logger("pilothouse.store")

#: Seconds a client is told to wait (Retry-After) while the store is unreachable.
RETRY_AFTER_SECONDS = 5

_POSTGRES_OUTAGE_STATES = {"57P01", "57P02", "57P03", "53300"}
_POSTGRES_REASONS = (
    ("refused", "connection refused"),
    ("no such file or directory", "connection refused"),
    ("timeout", "connection timed out"),
    ("timed out", "connection timed out"),
    ("starting up", "the server is starting up"),
    ("shutting down", "the server is shutting down"),
    ("terminating connection", "the server is shutting down"),
    ("recovery mode", "the server is recovering"),
    ("too many", "too many connections"),
)


def _postgres_reason(error: psycopg.Error) -> str | None:
    if isinstance(error, psycopg.InterfaceError):
        return None  # only an outage when SQLAlchemy saw it invalidate the connection
    if not isinstance(error, psycopg.OperationalError):
        return None
    state = error.sqlstate
    if state is not None and not state.startswith("08") and state not in _POSTGRES_OUTAGE_STATES:
        return None
    text = str(error).lower()
    for needle, reason in _POSTGRES_REASONS:
        if needle in text:
            return reason
    if state == "57P01":
        return "the server is shutting down"
    return "connection lost"


def _reason(error: sa_exc.DBAPIError) -> str | None:
    orig = error.orig
    if isinstance(orig, psycopg.Error) and (reason := _postgres_reason(orig)):
        return reason
    if isinstance(orig, sqlite3.OperationalError) and "unable to open" in str(orig).lower():
        return "unable to open the database file"
    if error.connection_invalidated:
        return "connection lost"
    return None


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the store's disk refused a write: full (SQLite's
    SQLITE_FULL, PostgreSQL's 53100) or failing (SQLite's "disk I/O error", which is also what
    opening a connection gives when its WAL index cannot be created; PostgreSQL's 58030). Reads
    of open connections may still work, so it is not an outage; writes are refused."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError):
            orig = current.orig
            text = str(orig)
            if isinstance(orig, sqlite3.OperationalError) and (
                "disk is full" in text or "disk I/O error" in text
            ):
                return True
            if isinstance(orig, psycopg.Error) and orig.sqlstate in ("53100", "58030"):
                return True
        current = current.__cause__ or current.__context__
    return False


def unreachable(exc: BaseException) -> str | None:
    """Why the store cannot be reached, when `exc` (or what caused it) says so; else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError):
            reason = _reason(current)
            if reason is not None:
                return reason
        current = current.__cause__ or current.__context__
    return None


@dataclass(frozen=True)
class Outage:
    started_at: datetime
    ended_at: datetime | None
    reason: str

    def describe(self) -> str:
        """e.g. 'from 12:00:01 to 12:00:21 UTC (connection refused)'."""
        start = self.started_at.strftime("%H:%M:%S")
        end = self.ended_at.strftime("%H:%M:%S") if self.ended_at else "now"
        return f"from {start} to {end} UTC ({self.reason})"


class StoreHealth:
    """The reachability of one store as this process saw it; one log line per change."""

    def __init__(self, keep: int = 20) -> None:
        self.down_since: datetime | None = None
        self.reason: str | None = None
        self.recovered_at: datetime | None = None
        self.outages: deque[Outage] = deque(maxlen=keep)

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def mark_down(self, reason: str) -> bool:
        """Record that the store cannot be reached; True (and one log line) on a change."""
        if self.down_since is not None:
            return False
        self.down_since, self.reason = utcnow(), reason
        log.error("store unreachable", reason=reason)
        return True

    def mark_up(self) -> bool:
        """Record that the store answered; True (and one log line) on a change."""
        if self.down_since is None:
            return False
        now = utcnow()
        outage = Outage(self.down_since, now, self.reason or "unreachable")
        self.outages.append(outage)
        self.down_since, self.reason, self.recovered_at = None, None, now
        seconds = (now - outage.started_at).total_seconds()
        log.warning("store reachable again", down_seconds=round(seconds, 1), reason=outage.reason)
        return True

    def current(self) -> Outage | None:
        """The outage going on now, if any."""
        if self.down_since is None:
            return None
        return Outage(self.down_since, None, self.reason or "unreachable")

    def outage_between(self, start: datetime, end: datetime) -> Outage | None:
        """The latest outage (ended or going on) that overlaps [start, end]."""
        for outage in [*self.outages, *filter(None, [self.current()])][::-1]:
            if outage.started_at <= end and (outage.ended_at is None or outage.ended_at >= start):
                return outage
        return None

    def recovered_within(self, seconds: float) -> bool:
        """Whether the store came back less than `seconds` ago."""
        return self.recovered_at is not None and utcnow() - self.recovered_at < timedelta(
            seconds=seconds
        )
