"""The metrics capability's background work (registered in worker.CAPABILITIES).

- `metrics.rollup` (once per 60 s slot across workers): 1-minute, 5-minute and hourly rollups;
- `metrics.retain` (once per 10 min slot): deletes what each level's retention lets go;
- `metrics.evaluate` (once per 60 s slot): default rules for services with a public URL, every
  alert rule evaluated (incidents and messages), series status from thresholds.
Off when PILOTHOUSE_METRICS_ENABLED is false.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pilothouse.alerts.service import notify
from pilothouse.core.clock import utcnow
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime
from pilothouse.metrics import alerting, storage

log = get_logger("pilothouse.worker")

ROLLUP_EVERY = 60.0
RETAIN_EVERY = 600.0
EVALUATE_EVERY = 60.0


def retention(rt: Runtime) -> storage.Retention:
    s = rt.settings
    return storage.Retention(
        raw=int(s.metrics_raw_hours * 3600),
        m1=int(s.metrics_1m_days * 86400),
        m5=int(s.metrics_5m_days * 86400),
        h1=int(s.metrics_1h_days * 86400),
    )


def loops(rt: Runtime) -> list[Loop]:
    if not rt.settings.metrics_enabled:
        return []

    async def rollup() -> None:
        written = await storage.rollup(rt.db, utcnow())
        log.debug("metric rollups", **written)

    async def retain() -> None:
        deleted = await storage.retain(rt.db, utcnow(), retention(rt))
        log.info("metric retention", **deleted)

    async def evaluate() -> None:
        await alerting.ensure_default_rules(rt.db)

        async def send(message: dict[str, Any]) -> None:
            await notify(rt.db, message)

        every = timedelta(minutes=rt.settings.reminder_minutes)
        await alerting.evaluate(rt.db, utcnow(), send, reminder_every=every)

    return [
        Loop("metrics.rollup", rollup, ROLLUP_EVERY, once=True),
        Loop("metrics.retain", retain, RETAIN_EVERY, once=True),
        Loop("metrics.evaluate", evaluate, EVALUATE_EVERY, once=True),
    ]
