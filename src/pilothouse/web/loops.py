"""`web.sessions.prune` (once per hour slot across workers, registered in worker.CAPABILITIES):
deletes dashboard sessions that expired or whose token was revoked (they are refused on use
already; this only keeps the table small)."""

from __future__ import annotations

from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime
from pilothouse.web import sessions

log = get_logger("pilothouse.web")
PRUNE_EVERY = 3600.0


def loops(rt: Runtime) -> list[Loop]:
    async def prune() -> None:
        async with rt.db.session() as session:
            removed = await sessions.prune(session)
        if removed:
            log.info("dashboard sessions pruned", sessions=removed)

    return [Loop("web.sessions.prune", prune, PRUNE_EVERY, once=True)]
