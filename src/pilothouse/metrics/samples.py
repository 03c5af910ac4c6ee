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
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.metrics.models import SOURCES, MetricSeries

#: Series looked up per SELECT (an IN list this long is fine on both stores).
LOOKUP_CHUNK = 500
#: Series ids remembered per store (then the memory starts over).
KNOWN_LIMIT = 200_000
_KNOWN: weakref.WeakKeyDictionary[Database, dict[str, int]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Sample:
    """One value of one series at one instant (`at` timezone-aware)."""

    name: str
    tags: Mapping[str, str]
    value: float
    at: datetime
    unit: str = ""
    source: str = "application"


@dataclass
class _NewSeries:
    name: str
    tags: dict[str, str]
    unit: str
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


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
    known = _KNOWN.setdefault(db, {})
    if len(known) > KNOWN_LIMIT:
        known.clear()
    learned: dict[str, int] = {}
    async with db.session() as session:
        written = await write_samples_in(
            session,
            db.dialect,
            samples,
            environment_id=environment_id,
            known=known,
            learned=learned,
        )
    known.update(learned)  # only once committed: a rolled-back series id is never remembered
    return written


async def write_samples_in(
    session: AsyncSession,
    dialect: str,
    samples: Sequence[Sample],
    *,
    environment_id: uuid.UUID | None = None,
    known: dict[str, int] | None = None,
    learned: dict[str, int] | None = None,
) -> int:
    """`write_samples` inside the caller's transaction. `known` caches series ids by key
    (series rows are never deleted, so an id once seen stays right for that store); ids looked
    up here are added to `learned`, for the caller to remember once the transaction commits."""
    keyed: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    rows: list[tuple[str, int, float]] = []
    wanted: dict[str, _NewSeries] = {}
    for sample in samples:
        value = float(sample.value)
        if not math.isfinite(value):
            continue
        ident = (sample.name, tuple(sorted(sample.tags.items())))
        key = keyed.get(ident)
        if key is None:
            key = series_key(sample.name, sample.tags)
            keyed[ident] = key
            source = sample.source if sample.source in SOURCES else "application"
            wanted[key] = _NewSeries(sample.name, dict(sample.tags), sample.unit[:32], source)
        rows.append((key, epoch_ms(sample.at), value))
    if not rows:
        return 0
    cache = known or {}
    fresh = learned if learned is not None else {}
    unknown = {key: new for key, new in wanted.items() if key not in cache}
    if unknown:
        fresh.update(await _series_ids(session, dialect, unknown, environment_id))
    values = [(cache.get(key) or fresh[key], ts, value) for key, ts, value in rows]
    await bulk_insert(session, dialect, values)
    return len(values)


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


async def _series_ids(
    session: AsyncSession,
    dialect: str,
    wanted: dict[str, _NewSeries],
    environment_id: uuid.UUID | None,
) -> dict[str, int]:
    ids = await _lookup(session, wanted)
    missing = [key for key in wanted if key not in ids]
    if not missing:
        return ids
    from pilothouse.metrics.series import placement

    now = utcnow()
    rows: list[dict[str, Any]] = []
    for key in missing:
        new = wanted[key]
        env_id, service_id = await placement(session, new.tags, environment_id)
        rows.append(
            {
                "key": key,
                "name": new.name,
                "tags": new.tags,
                "unit": new.unit,
                "source": new.source,
                "environment_id": env_id,
                "service_id": service_id,
                "status": "healthy",
                "created_at": now,
            }
        )
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(MetricSeries)
    await session.execute(insert.on_conflict_do_nothing(index_elements=["key"]), rows)
    ids.update(await _lookup(session, missing))
    return ids


async def bulk_insert(
    session: AsyncSession, dialect: str, rows: Sequence[tuple[int, int, float]]
) -> None:
    """Append (series_id, ts_ms, value) rows: COPY on PostgreSQL, executemany on SQLite, both on
    the session's own connection (so inside its transaction)."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if dialect == "postgresql":
        text = "".join(f"{sid}\t{ts}\t{value!r}\n" for sid, ts, value in rows)
        async with (
            driver.cursor() as cursor,
            cursor.copy("COPY metric_samples (series_id, ts, value) FROM STDIN") as copy,
        ):
            await copy.write(text)
        return
    await driver.executemany(
        "INSERT INTO metric_samples (series_id, ts, value) VALUES (?, ?, ?)", rows
    )
