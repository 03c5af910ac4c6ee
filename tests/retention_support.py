"""Running one registered loop once, at a time the test chooses (the retention loops)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import ModuleType

import pytest

from pilothouse.config import Settings
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.core.loops import Runtime
from pilothouse.worker import registered


def run_registered(
    settings: Settings,
    name: str,
    *,
    at: datetime,
    clock_in: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run the loop `name` as the worker registers it, once, with `clock_in.utcnow` at `at`."""
    monkeypatch.setattr(clock_in, "utcnow", lambda: at)

    async def go() -> None:
        db = Database(settings.database_url)
        try:
            rt = Runtime(db, settings, Leases(db, owner="test-worker", seconds=5.0))
            loop = next(loop for loop in registered(rt) if loop.name == name)
            assert loop.once and loop.every is not None, "a once-per-slot loop"
            await loop.run()
        finally:
            await db.dispose()

    asyncio.run(go())
