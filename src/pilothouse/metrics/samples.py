"""Writing samples: the one entry point every ingestion path uses (push, scrape, built-in).

`write_samples(db, samples)` finds or creates each sample's series (name + tags, one row per
distinct pair, keyed by the sha256 of the canonical `name{k="v",...}`) and appends the values to
the raw samples table in one transaction, through the store's bulk path: `COPY ... FROM STDIN`
on PostgreSQL, one `executemany` on SQLite. A new series takes its unit and source from the first
sample that names it; its environment and service are resolved from the `environment` and
`service` tags (or the environment given, for a token scoped to one).
"""

from __future__ import annotations

import hashlib
import math
import struct
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from itertools import repeat
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.metrics.models import SOURCES, MetricSeries

#: Series looked up per SELECT (an IN list this long is fine on both stores).
LOOKUP_CHUNK = 500
#: Series ids remembered per engine, all scopes together (then the memory starts over).
KNOWN_LIMIT = 200_000
#: A series as `write_samples_in` recognises it: (name, tag items in the sample's own order).
Ident = tuple[str, tuple[tuple[str, str], ...]]
#: Series identity -> series id, per engine and per scope of identities (see `known_ids`). Series
#: rows are never deleted, so an id once committed stays right for that store; only committed
#: ids enter it.
_KNOWN: weakref.WeakKeyDictionary[Any, dict[str, dict[Any, int]]] = weakref.WeakKeyDictionary()
_PENDING = "pilothouse.metrics.learned"
K = TypeVar("K")
#: PostgreSQL's binary COPY: signature, flags, header extension; one row; the trailer.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_ROW = struct.Struct("!hiqiqid")
_COPY_TRAILER = struct.pack("!h", -1)
_COPY_SQL = "COPY metric_samples (series_id, ts, value) FROM STDIN (FORMAT BINARY)"


class Sample(NamedTuple):
    """One value of one series at one instant (`at` timezone-aware). A named tuple: scrapes
    make one per exposed line, and a tuple is several times cheaper to make than a frozen
    dataclass."""

    name: str
    tags: Mapping[str, str]
    value: float
    at: datetime
    unit: str = ""
    source: str = "application"


def canonical(name: str, tags: Mapping[str, str]) -> str:
    """`name{k="v",...}` with tags sorted by key: the identity of a series."""
    inner = ",".join(f'{k}="{tags[k]}"' for k in sorted(tags))
    return f"{name}{{{inner}}}"


def series_key(name: str, tags: Mapping[str, str]) -> str:
    """The series' stored key: sha256 hex of its canonical form."""
    return hashlib.sha256(canonical(name, tags).encode()).hexdigest()


def epoch_ms(at: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    if at.tzinfo is None:
        raise ValueError("naive datetime given as a sample time")
    return round(at.timestamp() * 1000)


async def write_samples(
    db: Database,
    samples: Sequence[Sample],
    *,
    environment_id: uuid.UUID | None = None,
) -> int:
    """Store `samples` (creating their series as needed) in one transaction; returns how many
    were written. Non-finite values (NaN, +-Inf) are skipped: they carry no measurement."""
    if not samples:
        return 0
    async with db.session() as session:
        return await write_samples_in(session, db.dialect, samples, environment_id=environment_id)


def known_ids(session: AsyncSession, scope: str = "") -> dict[Any, int]:
    """The committed series ids of the session's engine, by the identity `scope` uses (""
    for `Ident`; the push path keys them per environment in its own terms)."""
    scopes = _KNOWN.setdefault(session.bind, {})
    if sum(len(ids) for ids in scopes.values()) > KNOWN_LIMIT:
        for ids in scopes.values():
            ids.clear()  # the bound holds over every scope (environment) together
    known = scopes.get(scope)
    if known is None:
        known = scopes[scope] = {}
    return known


def pending_ids(session: AsyncSession, known: dict[Any, int]) -> dict[Any, int]:
    """Ids of `known`'s scope created in the session's open transaction: they enter `known`
    once it commits (a rolled-back series row's id may be given to another series: it must
    never be remembered)."""
    waiting: dict[int, tuple[dict[Any, int], dict[Any, int]]] | None = session.info.get(_PENDING)
    if waiting is None:
        waiting = session.info[_PENDING] = {}
        every = waiting

        def committed(_: Any) -> None:
            for target, fresh in every.values():
                target.update(fresh)
                fresh.clear()

        def dropped(_: Any) -> None:
            for _target, fresh in every.values():
                fresh.clear()

        sa.event.listen(session.sync_session, "after_commit", committed)
        sa.event.listen(session.sync_session, "after_rollback", dropped)
    mine = _fresh(waiting, known)
    if mine is None:
        mine = {}
        waiting[id(known)] = (known, mine)
    return mine


def pending_so_far(session: AsyncSession, known: dict[Any, int]) -> Mapping[Any, int]:
    """`pending_ids` to read only: empty, and nothing registered, when the transaction has
    created no series of that scope yet (the usual case)."""
    mine = _fresh(session.info.get(_PENDING), known)
    return {} if mine is None else mine


def _fresh(
    waiting: dict[int, tuple[dict[Any, int], dict[Any, int]]] | None, known: dict[Any, int]
) -> dict[Any, int] | None:
    """The ids of `known`'s scope waiting for the commit, if any are registered (an entry
    under the id of another, collected, memory is not its own)."""
    entry = None if waiting is None else waiting.get(id(known))
    return entry[1] if entry is not None and entry[0] is known else None


async def write_samples_in(
    session: AsyncSession,
    dialect: str,
    samples: Sequence[Sample],
    *,
    environment_id: uuid.UUID | None = None,
) -> int:
    """`write_samples` inside the caller's transaction.

    The hot path is one pass over the samples with no per-sample objects beyond the row tuple:
    a series is recognised by (name, tag items) in a per-engine memory of committed ids, so the
    sha256 key, the lookup and the creation only happen for series this process has not seen
    (or seen only in this transaction)."""
    known = known_ids(session)
    pending = pending_so_far(session, known)
    isfinite = math.isfinite
    rows: list[tuple[int, int, float]] = []
    unknown: dict[Ident, Sample] = {}
    late: list[tuple[int, Ident]] = []  # (row index, series) of rows whose id is not known yet
    last_at: datetime | None = None
    last_ms = 0
    for sample in samples:
        value = sample.value
        if not isfinite(value):
            continue
        at = sample.at
        if at is not last_at:
            if at.tzinfo is None:
                raise ValueError("naive datetime given as a sample time")
            last_at, last_ms = at, round(at.timestamp() * 1000)
        ident = (sample.name, tuple(sample.tags.items()))
        series_id = known.get(ident)
        if series_id is None:
            series_id = pending.get(ident)
            if series_id is None:
                unknown.setdefault(ident, sample)
                late.append((len(rows), ident))
                series_id = 0
        rows.append((series_id, last_ms, float(value)))
    return await _place_and_insert(
        session, dialect, rows, unknown, late, known, environment_id=environment_id
    )


async def _place_and_insert(
    session: AsyncSession,
    dialect: str,
    rows: list[tuple[int, int, float]],
    unknown: dict[Ident, Sample],
    late: Sequence[tuple[int, Ident]],
    known: dict[Ident, int],
    *,
    environment_id: uuid.UUID | None,
) -> int:
    """Fill in the ids of rows whose series were not known (creating those series), then
    append the rows in bulk."""
    if not rows:
        return 0
    if unknown:
        ids = await series_ids(session, dialect, unknown, environment_id)
        for index, ident in late:
            _, ts, value = rows[index]
            rows[index] = (ids[ident], ts, value)
        pending_ids(session, known).update(ids)
    await bulk_insert(session, dialect, rows)
    return len(rows)


async def _lookup(session: AsyncSession, keys: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    listed = list(keys)
    for start in range(0, len(listed), LOOKUP_CHUNK):
        chunk = listed[start : start + LOOKUP_CHUNK]
        result = await session.execute(
            sa.select(MetricSeries.key, MetricSeries.id).where(MetricSeries.key.in_(chunk))
        )
        found.update({key: series_id for key, series_id in result.all()})
    return found


async def series_ids(
    session: AsyncSession,
    dialect: str,
    wanted: Mapping[K, Sample],
    environment_id: uuid.UUID | None,
) -> dict[K, int]:
    """Ids of the series of `wanted`, created when missing (one row per name + tags: tag
    orders that differ share one key)."""
    keys = {ident: series_key(sample.name, sample.tags) for ident, sample in wanted.items()}
    ids = await _lookup(session, set(keys.values()))
    missing = {key: wanted[ident] for ident, key in keys.items() if key not in ids}
    if missing:
        from pilothouse.metrics.series import placement

        now = utcnow()
        rows: list[dict[str, Any]] = []
        for key, sample in missing.items():
            tags = dict(sample.tags)
            env_id, service_id = await placement(session, tags, environment_id)
            rows.append(
                {
                    "key": key,
                    "name": sample.name,
                    "tags": tags,
                    "unit": sample.unit[:32],
                    "source": sample.source if sample.source in SOURCES else "application",
                    "environment_id": env_id,
                    "service_id": service_id,
                    "status": "healthy",
                    "created_at": now,
                }
            )
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(MetricSeries)
        await session.execute(insert.on_conflict_do_nothing(index_elements=["key"]), rows)
        ids.update(await _lookup(session, missing))
    return {ident: ids[key] for ident, key in keys.items()}


def copy_binary_columns(
    series: Sequence[int], times: Sequence[int], values: Sequence[float]
) -> bytes:
    """(series_id, ts_ms, value) rows, given as three columns of equal length, in PostgreSQL's
    binary COPY format: no text to parse on either side, packed in one C-level pass with no
    row tuple made."""
    if not len(series) == len(times) == len(values):
        raise ValueError(f"columns of {len(series)}, {len(times)} and {len(values)} rows")
    eight = repeat(8)
    rows = map(_COPY_ROW.pack, repeat(3), eight, series, eight, times, eight, values)
    return _COPY_HEADER + b"".join(rows) + _COPY_TRAILER


async def bulk_insert_columns(
    session: AsyncSession,
    dialect: str,
    series: Sequence[int],
    times: Sequence[int],
    values: Sequence[float],
) -> None:
    """`bulk_insert` of rows given as three columns of equal length."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if dialect == "postgresql":
        data = copy_binary_columns(series, times, values)
        async with driver.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
            await copy.write(data)
        return
    await driver.executemany(
        "INSERT INTO metric_samples (series_id, ts, value) VALUES (?, ?, ?)",
        zip(series, times, values, strict=True),
    )


async def bulk_insert(
    session: AsyncSession, dialect: str, rows: Sequence[tuple[int, int, float]]
) -> None:
    """Append (series_id, ts_ms, value) rows: binary COPY on PostgreSQL, one executemany of a
    prepared INSERT on SQLite, both on the session's own connection (inside its transaction)."""
    if rows:
        series, times, values = zip(*rows, strict=True)
        await bulk_insert_columns(session, dialect, series, times, values)
