"""The nodes capability's background work:

- `nodes.register` (once at start) and `nodes.heartbeat` (every 60 s, every worker): register
  this host as a node with its detected capacity and the configured labels, and refresh it;
- `nodes.watch` (every 3 s, every worker; each ssh node is probed by one worker per 3 s slot,
  claimed in job_slots): probe the hosts reached over SSH; one silent for
  PILOTHOUSE_NODE_UNREACHABLE_AFTER seconds becomes unreachable, its replicas are failed and
  replaced, and an alert goes out; when it answers again it is ready and fenced (its stray
  replicas stopped; nodes/watch.py). The watch keeps its own connections (short timeouts; see
  docs/multihost.md "Connections" for why it does not share the engine's); they are closed
  when the worker stops.
"""

from __future__ import annotations

from pilothouse.core.loops import Loop, Runtime
from pilothouse.nodes import service
from pilothouse.nodes.watch import NodeWatch

HEARTBEAT_EVERY = 60.0


def loops(rt: Runtime) -> list[Loop]:
    settings = rt.settings
    watch = NodeWatch(
        rt.db,
        rt.leases,
        unreachable_after=settings.node_unreachable_after,
        engine=settings.container_engine,
        runtime=settings.container_runtime,
    )

    async def register() -> None:
        async with rt.db.session() as session:
            await service.register_local(
                session,
                rt.data_dir,
                name=settings.node_name,
                labels=settings.node_labels,
                overrides=settings.node_capacity,
            )

    async def probe() -> None:
        await watch.tick()

    rt.at_stop(watch.close)

    return [
        Loop("nodes.register", register, None),
        Loop("nodes.heartbeat", register, HEARTBEAT_EVERY),
        Loop("nodes.watch", probe, watch.every),  # one slot per tick
    ]
