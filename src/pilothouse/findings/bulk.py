"""Appending many rows on the session's own connection (inside its transaction), past the ORM
and SQLAlchemy's per-parameter processing: COPY on PostgreSQL, the driver's executemany on
SQLite, with values converted the way SQLAlchemy stores them there (UUIDs as 32 hex digits,
UTC datetimes as naive ISO text, booleans as 0/1)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession


def sqlite_value(value: Any) -> Any:
    """A Python value as SQLAlchemy stores it in SQLite."""
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    return value


async def insert_rows(
    session: AsyncSession, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert `rows` (tuples in `columns` order, already in the store's form: Python values on
    PostgreSQL, sqlite_value() ones on SQLite) into `table`."""
    if not rows:
        return
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        async with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                await copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    await driver.executemany(
        f"INSERT INTO {table.name} ({names}) VALUES ({marks})",
        rows,
    )
