"""One lease kit for every claim that must hold across processes sharing one store.

Two kinds of claim, both decided by the database alone (SQLite or PostgreSQL), never by a
second coordination system:

- **Row lease.** A row with `lease_owner` and `lease_expires_at` columns (deployments, backups)
  belongs to the worker named in `lease_owner` until `lease_expires_at`. `claim` takes a free
  row, or one whose lease expired, in one conditional UPDATE: exactly one worker gets it.
  While working, the holder renews the lease every `seconds / 3` (`held`: a heartbeat task).
  When a holder dies, its lease expires at most `seconds` after its death (its last renewal was
  at most `seconds / 3` before it), and `reclaim` lets another worker take the row over.
  **Bound:** a loop that looks for expired leases every `tick` seconds takes a dead worker's row
  over within `seconds + tick` of the death, never before the lease expired.
- **Slot claim.** Periodic work that must run once however many workers run (a probe of one
  target in one time slot, the health reminders of one 30-second slot, a backup drill of one
  cron slot) is claimed by inserting a `(job, key, slot)` row: `INSERT .. ON CONFLICT DO
  NOTHING RETURNING` tells the one winner. `claim_slots` claims many pairs in one statement.

One worker id per process (`WORKER_ID`): the engine, the backup jobs, the health monitor and
the slot claims all write the same name, so a lease or a slot says which process holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, Database
from pilothouse.core.store import unreachable

#: This process's name in every lease and slot it holds: host, pid and a random suffix.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobSlot(Base):
    """One row per (job, key, time slot): whoever inserts it runs that job for that slot."""

    __tablename__ = "job_slots"

    job: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    slot: Mapped[datetime] = mapped_column(primary_key=True)
    worker: Mapped[str] = mapped_column(sa.String(100))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


def slot_start(now: datetime, every: timedelta) -> datetime:
    """The start of the fixed slot of length `every` containing `now` (slots start at the epoch,
    so every worker computes the same slot)."""
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    count = (now - epoch) // every
    return epoch + count * every


class Leases:
    """Row leases and slot claims of one worker (`owner`) with one lease length (`seconds`)."""

    def __init__(self, db: Database, *, owner: str = WORKER_ID, seconds: float = 15.0) -> None:
        self.db = db
        self.owner = owner
        self.seconds = seconds

    def _expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=self.seconds)

    # -- row leases --------------------------------------------------------------------------

    async def claim(
        self,
        model: Any,
        row_id: uuid.UUID,
        *conditions: sa.ColumnElement[bool],
        expired_ok: bool = True,
        **values: Any,
    ) -> bool:
        """Take the row if it matches `conditions` and nobody holds it (or, with `expired_ok`,
        its holder's lease expired); also sets `values`. True for the one worker that got it."""
        free = model.lease_owner.is_(None)
        if expired_ok:
            free = sa.or_(free, model.lease_expires_at < utcnow())
        return await self._update(
            model, row_id, (*conditions, free), lease_owner=self.owner, **values
        )

    async def reclaim(
        self, model: Any, row_id: uuid.UUID, *conditions: sa.ColumnElement[bool]
    ) -> bool:
        """Take over a row whose holder's lease expired (the holder is presumed dead)."""
        expired = (model.lease_owner.is_not(None), model.lease_expires_at < utcnow())
        return await self._update(model, row_id, (*conditions, *expired), lease_owner=self.owner)

    async def renew(self, model: Any, row_id: uuid.UUID) -> bool:
        """Push our lease's expiry `seconds` ahead; False when the row is no longer ours."""
        return await self._update(model, row_id, (model.lease_owner == self.owner,))

    async def expired(
        self, model: Any, *conditions: sa.ColumnElement[bool], limit: int = 100
    ) -> list[uuid.UUID]:
        """Ids of rows matching `conditions` whose holder's lease expired."""
        async with self.db.session(write=False) as session:
            return list(
                await session.scalars(
                    sa.select(model.id)
                    .where(
                        *conditions,
                        model.lease_owner.is_not(None),
                        model.lease_expires_at < utcnow(),
                    )
                    .limit(limit)
                )
            )

    async def expired_leases(
        self, model: Any, *conditions: sa.ColumnElement[bool], limit: int = 100
    ) -> list[tuple[uuid.UUID, str, datetime]]:
        """(id, holder, expiry) of rows matching `conditions` whose holder's lease expired."""
        async with self.db.session(write=False) as session:
            rows = await session.execute(
                sa.select(model.id, model.lease_owner, model.lease_expires_at)
                .where(
                    *conditions,
                    model.lease_owner.is_not(None),
                    model.lease_expires_at < utcnow(),
                )
                .limit(limit)
            )
            return [(row[0], row[1], row[2]) for row in rows]

    async def hand_over(self, model: Any, row_id: uuid.UUID) -> None:
        """Let our lease expire now, so reconciliation takes the row over at its next tick."""
        async with self.db.session() as session:
            await session.execute(
                sa.update(model)
                .where(model.id == row_id, model.lease_owner == self.owner)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
                .execution_options(synchronize_session=False)
            )

    @staticmethod
    def released() -> dict[str, Any]:
        """Column values that give a row's lease up (with its final status change)."""
        return {"lease_owner": None, "lease_expires_at": None}

    @contextlib.asynccontextmanager
    async def held(self, model: Any, row_id: uuid.UUID) -> AsyncIterator[None]:
        """Renew the lease every `seconds / 3` while the body runs (the heartbeat). While the
        store is unreachable it keeps trying: the lease is renewed when the store is back."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.seconds / 3)
                try:
                    await self.renew(model, row_id)
                except Exception as exc:
                    if unreachable(exc) is None:
                        raise

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _update(
        self, model: Any, row_id: uuid.UUID, where: Sequence[Any], **values: Any
    ) -> bool:
        async with self.db.session() as session:
            result = await session.execute(
                sa.update(model)
                .where(model.id == row_id, *where)
                .values(lease_expires_at=self._expiry(), **values)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0) == 1)

    # -- slot claims -------------------------------------------------------------------------

    async def claim_slot(self, job: str, key: str, slot: datetime) -> bool:
        """Whoever inserts (job, key, slot) first runs that job for that slot."""
        won = await self.claim_slots(JobSlot, [{"job": job, "key": key, "slot": slot}])
        return bool(won)

    async def claimed(self, job: str, slot: datetime) -> set[str]:
        """Keys of `job` already claimed (by anyone) for `slot`."""
        async with self.db.session(write=False) as session:
            return set(
                await session.scalars(
                    sa.select(JobSlot.key).where(JobSlot.job == job, JobSlot.slot == slot)
                )
            )

    async def claim_slots(self, table: Any, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Insert claim rows of `table` (its primary key is the slot's identity) in one
        statement per 500; returns the primary keys this worker won.

        RETURNING tells which rows went in; rowcount is not reliable for
        INSERT .. ON CONFLICT DO NOTHING on every driver (psycopg reported -1)."""
        keys = list(sa.inspect(table).primary_key)
        now = utcnow()
        won: list[Any] = []
        async with self.db.session() as session:
            for start in range(0, len(rows), 500):
                chunk = [
                    {**row, "worker": self.owner, "claimed_at": now}
                    for row in rows[start : start + 500]
                ]
                statement = (
                    self.db.insert(table).values(chunk).on_conflict_do_nothing().returning(*keys)
                )
                won.extend(tuple(row) for row in await session.execute(statement))
        return won

    async def prune_slots(self, before: datetime) -> int:
        """Forget job slots that started before `before` (they can no longer be claimed)."""
        async with self.db.session() as session:
            result = await session.execute(sa.delete(JobSlot).where(JobSlot.slot < before))
            return int(getattr(result, "rowcount", 0) or 0)
