"""Engines, sessions and the declarative base shared by every feature.

SQLite runs in WAL mode with foreign keys and a busy timeout. It has two engines: writes open
with BEGIN IMMEDIATE (so two writers queue instead of failing on lock upgrade), reads open with a
plain deferred BEGIN (so readers never wait on writers). PostgreSQL uses one engine for both.

Each Database keeps the store's reachability (`health`, see core/store.py): a session that fails
because the store cannot be reached marks it down, a connection handed out by the pool (after
its pre-ping) marks it up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.store import StoreHealth, unreachable
from pilothouse.core.types import JSONType, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations are stable on both databases."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


class UUIDPk:
    """Mixin: a UUID primary key generated in Python."""

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)


class Timestamps:
    """Mixin: created_at and updated_at, UTC."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SoftDelete:
    """Mixin: rows are never removed; deleted_at hides them from list and get."""

    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


def normalise_url(url: str) -> tuple[URL, URL]:
    """Return (sync_url, async_url) for a user-given URL (sqlite:// or postgresql://)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite"), parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        pg = parsed.set(drivername="postgresql+psycopg")
        return pg, pg
    raise ValueError(
        f"unsupported database URL scheme {parsed.drivername!r}: use sqlite or postgresql"
    )


def _sqlite_pragmas(dbapi_connection: Any, immediate: bool) -> None:
    # Take transaction control away from pysqlite so BEGIN is ours to emit.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _install_sqlite_events(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _sqlite_pragmas(dbapi_connection, immediate)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_sync_engine(url: str) -> Engine:
    """A synchronous engine (migrations, init); SQLite gets the same pragmas."""
    sync_url, _ = normalise_url(url)
    if sync_url.get_backend_name() == "sqlite":
        engine = sa.create_engine(sync_url, hide_parameters=True)
        _install_sqlite_events(engine.engine, immediate=True)
        return engine
    return sa.create_engine(sync_url, pool_pre_ping=True, hide_parameters=True)


CONNECT_TIMEOUT = {"connect_timeout": 5}


class Database:
    """The store: async engines and session scopes for one database URL."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        _, async_url = normalise_url(url)
        self.dialect = async_url.get_backend_name()
        if self.dialect == "sqlite":
            self.write_engine: AsyncEngine = create_async_engine(async_url, hide_parameters=True)
            self.read_engine: AsyncEngine = create_async_engine(async_url, hide_parameters=True)
            _install_sqlite_events(self.write_engine.sync_engine, immediate=True)
            _install_sqlite_events(self.read_engine.sync_engine, immediate=False)
        else:
            self.write_engine = create_async_engine(
                async_url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                # Bound values never appear in errors or logs: they may be secrets.
                hide_parameters=True,
                # An unreachable host fails a request in seconds instead of hanging it.
                connect_args={} if "connect_timeout" in async_url.query else CONNECT_TIMEOUT,
            )
            self.read_engine = self.write_engine
        self.health = StoreHealth()
        for engine in {self.write_engine, self.read_engine}:
            event.listen(engine.sync_engine, "checkout", self._reached)
        self._writer = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)

    def _reached(self, *_: Any) -> None:
        self.health.mark_up()

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends cleanly, rolled back otherwise."""
        maker = self._writer if write else self._reader
        async with maker() as session:
            try:
                yield session
                if write:
                    await session.commit()
                # Reads just close: the pool rolls the connection back, and loaded objects
                # stay readable (a session rollback would expire them).
            except BaseException as exc:
                reason = unreachable(exc)
                if reason is None:
                    await session.rollback()
                    raise
                self.health.mark_down(reason)
                with contextlib.suppress(Exception):  # the connection is gone already
                    await session.rollback()
                raise

    async def ping(self, timeout: float = 5.0) -> str | None:
        """None when the store answers `SELECT 1` within `timeout`, else why not."""
        try:
            async with asyncio.timeout(timeout), self.session(write=False) as session:
                await session.execute(sa.text("SELECT 1"))
        except TimeoutError:
            reason = f"no answer within {timeout:g}s"
            self.health.mark_down(reason)
            return reason
        except Exception as exc:
            return unreachable(exc) or f"the store refused: {type(exc).__name__}"
        return None

    def insert(self, table: Any) -> Any:
        """An INSERT of this database's dialect (so `.on_conflict_do_nothing()` works on both)."""
        from sqlalchemy.dialects import postgresql, sqlite

        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def id_or_name(id_column: Any, name_column: Any, ref: str) -> sa.ColumnElement[bool]:
    """WHERE clause for a user's reference: the id when `ref` is a UUID, else the name."""
    try:
        return id_column == uuid.UUID(ref)  # type: ignore[no-any-return]
    except ValueError:
        return name_column == ref  # type: ignore[no-any-return]


#: The shortest id prefix accepted as a reference (git style; shorter ones match too much).
MIN_ID_PREFIX = 4
_HEX = frozenset("0123456789abcdef")


def id_prefix(ref: str) -> str | None:
    """The lowercase hex digits of `ref` when it can be an id prefix (4 to 32 hex digits,
    dashes ignored), else None."""
    digits = ref.replace("-", "").lower()
    if MIN_ID_PREFIX <= len(digits) <= 32 and set(digits) <= _HEX:
        return digits
    return None


def id_matches(id_column: Any, ref: str) -> sa.ColumnElement[bool]:
    """WHERE clause: the id equals `ref` (a full UUID) or starts with it (a prefix of at least
    4 hex digits); false for anything else. Portable: PostgreSQL renders a UUID with dashes,
    SQLite stores 32 hex digits, so dashes are removed on both sides."""
    try:
        return id_column == uuid.UUID(ref)  # type: ignore[no-any-return]
    except ValueError:
        pass
    digits = id_prefix(ref)
    if digits is None:
        return sa.false()
    text = sa.func.lower(sa.func.replace(sa.cast(id_column, sa.String), "-", ""))
    return text.like(f"{digits}%")


async def one_by_ref(
    session: Any,
    query: sa.Select[Any],
    id_column: Any,
    ref: str,
    kind: str,
    *,
    name_column: Any = None,
) -> Any:
    """The one row of `query` (already limited to what the caller may see) that `ref` names:
    a full id, a unique id prefix, or (with `name_column`) an exact name. A name wins over an
    id prefix. NotFound when nothing matches (also for records the caller may not see);
    Conflict (409) listing the candidates when a prefix or a name matches several."""
    from pilothouse.errors import Conflict, NotFound

    clauses = []
    if name_column is not None and not _is_uuid(ref):
        clauses.append((name_column == ref, "named"))
    clauses.append((id_matches(id_column, ref), "whose id starts with"))
    for clause, how in clauses:
        found = (await session.scalars(query.where(clause).limit(11))).all()
        if len(found) == 1:
            return found[0]
        if found:
            shown = ", ".join(str(row.id) for row in found[:10])
            more = " and more" if len(found) > 10 else ""
            raise Conflict(
                f"several {kind}s {how} {ref!r}: {shown}{more}; give more of the id",
                detail={"candidates": [str(row.id) for row in found[:10]]},
            )
    raise NotFound(f"{kind} {ref!r} not found")


def _is_uuid(ref: str) -> bool:
    try:
        uuid.UUID(ref)
    except ValueError:
        return False
    return True


def live_unique(name: str, *columns: str) -> sa.Index:
    """A unique index over rows that are not soft-deleted (so a deleted name can be reused)."""
    where = sa.text("deleted_at IS NULL")
    return sa.Index(name, *columns, unique=True, sqlite_where=where, postgresql_where=where)
