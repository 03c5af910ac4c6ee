"""Each probe runs once per slot, however many workers share the database."""

from __future__ import annotations

import asyncio

from pilothouse.core.db import Database
from pilothouse.healthchecks.monitor import Monitor, MonitorSettings, offset


async def test_one_claim_per_target_and_slot(db: Database) -> None:
    workers = [Monitor(db, MonitorSettings(worker=f"w{i}")) for i in range(3)]
    for slot in range(5):
        won = await asyncio.gather(*(w._claim("replica:x", slot) for w in workers))
        assert sorted(won) == [False, False, True]


def test_offsets_spread_targets_inside_the_interval() -> None:
    offsets = {offset(f"replica:{i}", 30) for i in range(200)}
    assert all(0 <= o < 30 for o in offsets)
    assert len(offsets) > 150  # spread, not bunched on one instant
    assert offset("a", 30) == offset("a", 30)  # stable across runs and workers
