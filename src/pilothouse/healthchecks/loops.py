"""The health capability's background work (registered in worker.CAPABILITIES).

- `healthchecks.probe` (every 0.5 s, every worker): starts the probes whose slot has come; each
  (target, slot) is claimed in probe_claims, so a probe runs once however many workers run;
- `healthchecks.remind` (once per 30 s slot across workers): reminders of open incidents;
- `healthchecks.maintain` (once per 5 min slot): hourly rollups, downtime, retention;
- `healthchecks.sla` (once per hour slot): SLA breach alerts (one per service and month).
Off when PILOTHOUSE_HEALTH_ENABLED is false.
"""

from __future__ import annotations

import time

from pilothouse.alerts.service import notify
from pilothouse.core.clock import utcnow
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime
from pilothouse.healthchecks import service as health
from pilothouse.healthchecks.monitor import Monitor, MonitorSettings

log = get_logger("pilothouse.worker")

REMIND_EVERY = 30.0
MAINTAIN_EVERY = 300.0
SLA_EVERY = 3600.0


class HealthLoops:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.monitor = Monitor(
            rt.db,
            MonitorSettings(
                reminder_minutes=rt.settings.reminder_minutes,
                buffer=rt.settings.health_buffer,
                worker=rt.leases.owner,
                cert_warn_days=rt.settings.certs_warn_days,
                tls_ca_file=rt.settings.certs_ca_file,
            ),
            # App-reported figures per replica (the metrics capability appends its source).
            figures=rt.hooks("replica_figures"),
        )

    async def probe(self) -> None:
        await self.monitor.tick(time.time())

    async def maintain(self) -> None:
        figures = await health.maintain(self.rt.db)
        log.info("health maintenance", **figures)

    async def check_sla(self) -> None:
        for svc, report in await health.sla_breaches(self.rt.db, utcnow(), self.rt.leases):
            message = {
                "event": "sla",
                "service": svc.name,
                "uptime_percent": round(report.uptime_percent, 3),
                "sla_target": report.sla_target,
                "text": f"{svc.name}: month-to-date uptime {report.uptime_percent:.3f}% is below "
                f"its SLA target {report.sla_target}%",
            }
            await notify(self.rt.db, message)


def loops(rt: Runtime) -> list[Loop]:
    if not rt.settings.health_enabled:
        return []
    health_loops = HealthLoops(rt)
    monitor = health_loops.monitor
    return [
        Loop("healthchecks.probe", health_loops.probe, monitor.settings.tick),
        Loop("healthchecks.remind", monitor.remind, REMIND_EVERY, once=True),
        Loop("healthchecks.maintain", health_loops.maintain, MAINTAIN_EVERY, once=True),
        Loop("healthchecks.sla", health_loops.check_sla, SLA_EVERY, once=True),
    ]
