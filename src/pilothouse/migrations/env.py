"""Alembic environment: one tree for SQLite and PostgreSQL (batch mode on SQLite)."""

from __future__ import annotations

from alembic import context

from pilothouse.core.db import make_sync_engine
from pilothouse.models import Base

config = context.config
url: str | None = config.attributes.get("pilothouse_url") or config.get_main_option(
    "sqlalchemy.url"
)
if not url:
    raise RuntimeError("no database URL given to the migrations")


def run_migrations_online(url: str) -> None:
    engine = make_sync_engine(url)
    with engine.connect() as connection:
        is_sqlite = connection.dialect.name == "sqlite"
        if is_sqlite:
            # Batch migrations copy tables; foreign keys must be off while they do. Set on the
            # driver's connection, outside any transaction: through SQLAlchemy the statement
            # would open one first (core/db.py emits BEGIN), where SQLite ignores this pragma,
            # and dropping a referenced table would then cascade or fail.
            connection.connection.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA foreign_keys=OFF"
            )
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=is_sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online(url)
