"""The nodes capability's background work: register this host as a node at start-up (with its
detected capacity and the configured labels) and refresh it (last seen) every minute."""

from __future__ import annotations

from pilothouse.core.loops import Loop, Runtime
from pilothouse.nodes import service

HEARTBEAT_EVERY = 60.0


def loops(rt: Runtime) -> list[Loop]:
    settings = rt.settings

    async def register() -> None:
        async with rt.db.session() as session:
            await service.register_local(
                session,
                rt.data_dir,
                name=settings.node_name,
                labels=settings.node_labels,
                overrides=settings.node_capacity,
            )

    return [
        Loop("nodes.register", register, None),
        Loop("nodes.heartbeat", register, HEARTBEAT_EVERY),
    ]
