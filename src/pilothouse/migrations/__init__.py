"""Alembic migrations shipped inside the package; run with `pilothouse db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pilothouse.core.db import make_sync_engine

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    """An Alembic Config pointing at the packaged scripts and at `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["pilothouse_url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision`."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at `url` to `revision` ("base" removes every table)."""
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision shipped with this version of pilothouse."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head
