"""The alerts capability's background work (registered in worker.CAPABILITIES).

- `alerts.deployment_hook` (once at start): registers the deployment notifications with the
  release engine (the "deployment_event" hook list): each state transition queues a notice to
  the channels that opted in (alerts/deployments.py); sending runs in its own task.
"""

from __future__ import annotations

from pilothouse.alerts import deployments
from pilothouse.core.loops import Loop, Runtime


def loops(rt: Runtime) -> list[Loop]:
    async def register_hook() -> None:
        rt.hooks("deployment_event").append(deployments.hook(rt.db, rt.leases, rt.tasks.spawn))

    return [Loop("alerts.deployment_hook", register_hook, None)]
