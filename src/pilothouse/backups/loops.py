"""The backup capability's background work (registered in worker.CAPABILITIES).

- `backups.pre_deploy_hook` (once at start): registers the pre-deployment backup with the
  release engine (the "pre_deploy" hook list);
- `backups.tick` (every 10 s, every worker): reconciles interrupted backups (expired leases),
  creates scheduled ones when their cron slot comes (once per target and slot), retries failed
  ones when due, and runs waiting ones (each claimed by lease, at most
  PILOTHOUSE_BACKUP_CONCURRENCY at a time per worker); drills and the retention cleanup run when
  their cron slot comes, claimed in job_slots so one worker runs each;
- `backups.freshness` (once per 60 s slot across workers): an alert when a target has had no
  verified backup for its schedule interval plus PILOTHOUSE_BACKUP_FRESHNESS_GRACE_MINUTES, once
  per overdue period, and a recovery notice when a verified backup lands (backups/freshness.py).
Off when PILOTHOUSE_BACKUPS_ENABLED is false.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime, timedelta

from pilothouse.alerts.service import notify
from pilothouse.backups import freshness, jobs
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import CryptoError, Keyring
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime
from pilothouse.errors import Conflict

log = get_logger("pilothouse.worker")

TICK_EVERY = 10.0
FRESHNESS_EVERY = 60.0


class BackupLoops:
    def __init__(self, rt: Runtime) -> None:
        settings = rt.settings
        self.rt = rt
        self.ctx = jobs.BackupContext(
            rt.db,
            rt.data_dir,
            master_key=settings.master_key,
            lease_seconds=rt.leases.seconds,
            worker_id=rt.leases.owner,
            cleanup_schedule=settings.backup_cleanup_schedule,
        )
        self.slots = asyncio.Semaphore(settings.backup_concurrency)

    async def register_hook(self) -> None:
        self.rt.hooks("pre_deploy").append(jobs.pre_deploy_hook(self.ctx))

    async def tick(self) -> None:
        """Reconcile, schedule, retry, then start what waits; drills and cleanup by slot."""
        ctx, tasks = self.ctx, self.rt.tasks
        now = utcnow()
        await jobs.reconcile_interrupted(ctx)
        targets = await jobs.enabled_targets(ctx)
        await jobs.schedule_due(ctx, now, targets)
        await jobs.retry_due(ctx, now)
        for backup_id in await jobs.runnable(ctx):
            if self.slots.locked():
                break
            tasks.spawn(("backup", backup_id), self._run(backup_id))
        for backup_id in await jobs.drills_due(ctx, now, targets):
            tasks.spawn(("drill", uuid.uuid4()), jobs.drill_backup(ctx, backup_id))
        if await jobs.cleanup_due(ctx, now):
            tasks.spawn(("cleanup", uuid.uuid4()), self._cleanup())

    async def _run(self, backup_id: uuid.UUID) -> None:
        async with self.slots:
            with contextlib.suppress(Conflict):  # another worker claimed it first
                await jobs.run_backup(self.ctx, backup_id)

    async def freshness(self, now: datetime | None = None) -> int:
        """Send the freshness alerts and recovery notices due (each once); how many."""
        grace = timedelta(minutes=self.rt.settings.backup_freshness_grace_minutes)
        notices = await freshness.check(self.rt.db, self.rt.leases, now or utcnow(), grace)
        try:
            keyring: Keyring | None = self.ctx.keyring()
        except CryptoError:
            keyring = None  # channels without sealed settings still get it
        for notice in notices:
            log.warning("backup freshness", target=notice.target, alert=notice.message["event"])
            try:
                await notify(self.rt.db, notice.message, keyring=keyring)
            except Exception as exc:  # the claim is spent: logged, like every other alert
                log.error("backup freshness alert failed", exc_info=exc)
        return len(notices)

    async def _cleanup(self) -> None:
        figures = await jobs.cleanup(self.ctx)
        log.info("backup cleanup", **figures)


def loops(rt: Runtime) -> list[Loop]:
    if not rt.settings.backups_enabled:
        return []
    backups = BackupLoops(rt)
    return [
        Loop("backups.pre_deploy_hook", backups.register_hook, None),
        Loop("backups.tick", backups.tick, TICK_EVERY),
        Loop("backups.freshness", backups.freshness, FRESHNESS_EVERY, once=True),
    ]
