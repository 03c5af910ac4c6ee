"""The findings capability's background work (registered in worker.CAPABILITIES), and its
security gate registered as the release engine's pre-start check (hook list "pre_start").

- `findings.scans` (every 2 s, every worker): claims pending scans (by lease) and runs each;
- `findings.schedule` (once per 60 s slot): records a pending scan for every due cron schedule;
- `findings.sla` (once per 60 s slot): SLA breach alerts, once per finding;
- `findings.expire` (once per 300 s slot): accepted risks past their expiry reopen.
Off (the gate included) when PILOTHOUSE_FINDINGS_ENABLED is false.
"""

from __future__ import annotations

from typing import Any

from pilothouse.alerts.service import notify
from pilothouse.core.clock import utcnow
from pilothouse.core.loops import Loop, Runtime
from pilothouse.findings import gate, jobs

SCANS_EVERY = 2.0
SCHEDULE_EVERY = 60.0
SLA_EVERY = 60.0
EXPIRE_EVERY = 300.0


def loops(rt: Runtime) -> list[Loop]:
    s = rt.settings
    if not s.findings_enabled:
        return []
    rt.hooks("pre_start").append(
        gate.check(rt.db, s.findings_gate_severities, s.findings_gate_environment_types)
    )

    async def scans() -> None:
        for scan_id in await jobs.pending_scans(rt.db, utcnow()):
            key = ("scan", scan_id)
            if key not in rt.tasks:
                rt.tasks.spawn(
                    key,
                    jobs.run_scan(
                        rt.db,
                        rt.leases,
                        scan_id,
                        timeout=s.findings_scan_timeout,
                        sla_days=s.findings_sla_days,
                    ),
                )

    async def schedule() -> None:
        await jobs.due_schedules(rt.db, utcnow())

    async def sla() -> None:
        async def send(message: dict[str, Any]) -> None:
            await notify(rt.db, message)

        await jobs.sla_breaches(rt.db, utcnow(), send)

    async def expire() -> None:
        await jobs.expire(rt.db, utcnow())

    return [
        Loop("findings.scans", scans, SCANS_EVERY),
        Loop("findings.schedule", schedule, SCHEDULE_EVERY, once=True),
        Loop("findings.sla", sla, SLA_EVERY, once=True),
        Loop("findings.expire", expire, EXPIRE_EVERY, once=True),
    ]
