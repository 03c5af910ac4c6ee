"""The autoscaling capability's background work (registered in worker.CAPABILITIES).

- `autoscaling.evaluate` (once per slot across workers, every 15 s by default): every enabled
  policy whose evaluation period has elapsed is evaluated; what it decides is carried out as a
  `scale` deployment and recorded as a scaling event, sent to the alert channels;
- `autoscaling.retain` (once per hour slot): scaling events older than
  PILOTHOUSE_SCALING_EVENT_DAYS (90) are deleted.
Off when PILOTHOUSE_AUTOSCALING_ENABLED is false.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pilothouse.alerts.service import notify
from pilothouse.autoscaling import evaluate
from pilothouse.core.clock import utcnow
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime

log = get_logger("pilothouse.worker")

EVALUATE_EVERY = 15.0
RETAIN_EVERY = 3600.0


def loops(rt: Runtime) -> list[Loop]:
    if not rt.settings.autoscaling_enabled:
        return []
    every = float(rt.settings.loop_intervals.get("autoscaling.evaluate", EVALUATE_EVERY))

    async def send(message: dict[str, Any]) -> None:
        await notify(rt.db, message)

    async def evaluate_all() -> None:
        # Half a slot of slack: a policy whose period equals the slot is evaluated every slot.
        done = await evaluate.evaluate_round(rt.db, utcnow(), send=send, slack=every / 2)
        if done.scaled or done.failed:
            log.info("autoscaling round", evaluated=done.evaluated, scaled=done.scaled)

    async def retain() -> None:
        days = rt.settings.scaling_event_days
        deleted = await evaluate.retain(rt.db, utcnow() - timedelta(days=days))
        if deleted:
            log.info("scaling event retention", deleted=deleted)

    return [
        Loop("autoscaling.evaluate", evaluate_all, EVALUATE_EVERY, once=True),
        Loop("autoscaling.retain", retain, RETAIN_EVERY, once=True),
    ]
