"""Running backups, integrity checks, restore drills, restores and cleanup (the I/O edge).

Each job takes an id, claims its record with a lease in the database (renewed while it runs),
runs the blocking pipeline in a thread, and writes the outcome in one transaction. A process that
dies mid-way stops renewing; `reconcile_interrupted` then marks the backup failed, removes what it
had staged and schedules a retry. Nothing is ever marked completed before its object is whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from pilothouse.access import Principal, system_actor
from pilothouse.alerts.service import notify
from pilothouse.audit import service as audit
from pilothouse.backups import service
from pilothouse.backups.databases import Contents, DatabaseError, database, parse_dsn, safe_dsn
from pilothouse.backups.drill import drill_verdict
from pilothouse.backups.models import Backup, BackupTarget
from pilothouse.backups.pipeline import Progress, Written, read_backup, write_backup
from pilothouse.backups.recovery import BackupFailed, describe, restore_failure, restore_into
from pilothouse.backups.retention import expires_at, gfs_class, merged_policy
from pilothouse.backups.schedule import DEFAULT_CLEANUP, due_slot
from pilothouse.backups.storage import Storage, open_storage
from pilothouse.config import MASTER_KEY_FILE
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import Keyring, load_keyring
from pilothouse.core.db import Database
from pilothouse.core.leases import WORKER_ID, Leases
from pilothouse.core.logging import get_logger
from pilothouse.drivers.base import RolloutFailed
from pilothouse.errors import Conflict, PilothouseError

log = get_logger("pilothouse.backups")

BACKUP_ACTOR = system_actor("backups")
MB = 1024 * 1024


@dataclass
class BackupContext:
    """What backup jobs need: the store, the data directory (master key, local objects)."""

    db: Database
    data_dir: Path
    master_key: str | None = None
    lease_seconds: float = 15.0
    worker_id: str = WORKER_ID
    cleanup_schedule: str = DEFAULT_CLEANUP
    catchup: timedelta = timedelta(hours=24)
    alerts: bool = True
    store_url: str = ""  # pilothouse's own store (for `backup self`)

    @property
    def leases(self) -> Leases:
        """Backup leases and job slots, under this context's worker id."""
        return Leases(self.db, owner=self.worker_id, seconds=self.lease_seconds)

    def keyring(self) -> Keyring:
        """Read on every job, so `pilothouse keys rotate` takes effect without a restart."""
        return load_keyring(self.master_key, self.data_dir / MASTER_KEY_FILE)

    def storage(self, target: BackupTarget) -> Storage:
        return open_storage(target.storage, self.data_dir)


async def _alert(ctx: BackupContext, event: str, text: str, **extra: Any) -> None:
    if not ctx.alerts:
        return
    try:
        message = {"event": event, "text": text, **extra}
        await notify(ctx.db, message, keyring=ctx.keyring(), wait=True)  # may be a one-shot CLI
    except Exception as exc:  # an alert that cannot be sent must not fail the job
        log.error("backup alert failed", exc_info=exc)


async def _load(ctx: BackupContext, backup_id: uuid.UUID) -> tuple[Backup, BackupTarget]:
    async with ctx.db.session(write=False) as session:
        backup = await session.get(Backup, backup_id)
        if backup is None:
            raise Conflict(f"backup {backup_id} does not exist")
        target = await session.get(BackupTarget, backup.target_id)
        assert target is not None
        return backup, target


def _source(target: BackupTarget, keyring: Keyring) -> tuple[str, URL]:
    return parse_dsn(service.target_dsn(target, keyring))


# -- leases ------------------------------------------------------------------------------------


async def claim(ctx: BackupContext, backup_id: uuid.UUID) -> bool:
    """Take an unclaimed in_progress backup; False if someone else has it (an expired lease is
    not taken here: `reconcile_interrupted` fails that attempt first)."""
    return await ctx.leases.claim(
        Backup, backup_id, Backup.status == "in_progress", expired_ok=False, started_at=utcnow()
    )


# -- taking a backup ---------------------------------------------------------------------------


@dataclass
class _Outcome:
    written: Written
    tool_version: str
    contents: Contents


def _take(
    kind: str,
    url: URL,
    storage: Storage,
    key: str,
    keyring: Keyring,
    progress: Progress | None,
    checksums: bool = True,
) -> _Outcome:
    dump = database(kind).dump(url, checksums=checksums)
    writer = None
    try:
        writer = storage.open_writer(key)
        written = write_backup(dump.stream, keyring, writer, progress=progress)
        dump.finish()  # the dump tool's exit status, the counts and checksums, before we commit
        writer.commit()
    except BaseException:
        dump.kill()
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.abort()
        raise
    return _Outcome(written, dump.tool_version, dump.contents)


async def run_backup(
    ctx: BackupContext, backup_id: uuid.UUID, *, progress: Progress | None = None
) -> Backup:
    """Carry out one in_progress backup end to end, then verify it. Returns the final record."""
    if not await claim(ctx, backup_id):
        raise Conflict(f"backup {backup_id} is not waiting to run (another worker has it?)")
    backup, target = await _load(ctx, backup_id)
    checks = target.content_checksums
    started = time.monotonic()
    try:
        keyring = ctx.keyring()
        engine, url = _source(target, keyring)
        storage = ctx.storage(target)
        async with ctx.leases.held(Backup, backup_id):
            outcome = await asyncio.to_thread(
                _take, engine, url, storage, backup.object_key, keyring, progress, checks
            )
    except Exception as exc:
        log.warning("backup failed", backup=str(backup_id), target=target.name, error=describe(exc))
        return await _record_failure(ctx, backup_id, describe(exc))
    finished = await _record_success(ctx, backup_id, outcome, time.monotonic() - started)
    if finished.status != "completed":
        return finished
    log.info(
        "backup completed",
        backup=str(backup_id),
        target=target.name,
        mb=round(outcome.written.raw_bytes / MB, 1),
        stored_mb=round(outcome.written.stored_bytes / MB, 1),
        seconds=finished.duration_seconds,
    )
    return await verify_backup(ctx, backup_id)


async def _record_success(
    ctx: BackupContext, backup_id: uuid.UUID, outcome: _Outcome, seconds: float
) -> Backup:
    now = utcnow()
    async with ctx.db.session() as session:
        row = await session.get(Backup, backup_id, with_for_update=True)
        assert row is not None
        target = await session.get(BackupTarget, row.target_id)
        assert target is not None
        if row.status != "in_progress" or row.lease_owner != ctx.worker_id:
            # We were presumed dead and reconciled meanwhile: our object must not survive as an
            # unrecorded copy.
            storage = ctx.storage(target)
            await asyncio.to_thread(storage.delete, row.object_key)
            return row
        w = outcome.written
        row.size_bytes, row.stored_bytes = w.raw_bytes, w.stored_bytes
        row.backup_size_mb = round(w.raw_bytes / MB)
        row.compressed_size_mb = round(w.stored_bytes / MB)
        row.compression_ratio = round(w.stored_bytes / w.raw_bytes, 6) if w.raw_bytes else None
        row.checksum_sha256, row.key_id = w.checksum, w.key_id
        row.dump_tool_version = outcome.tool_version[:200]
        row.table_counts = outcome.contents.counts
        row.table_checksums = outcome.contents.checksums
        row.completed_at = now
        row.duration_seconds = max(0, round(seconds))
        earlier = await service.earlier_scheduled(session, row.target_id, row.started_at)
        row.gfs_class = gfs_class(row.triggered_by, row.started_at, earlier)
        row.is_monthly_archive = row.gfs_class == "monthly"
        row.retention_expires_at = expires_at(
            row.started_at, row.gfs_class, merged_policy(target.retention)
        )
        row.error_message = None
        row.next_attempt_at = None
        row.lease_owner = row.lease_expires_at = None
        await service.transition(session, row, "completed", actor=BACKUP_ACTOR)
        return row


async def _record_failure(ctx: BackupContext, backup_id: uuid.UUID, message: str) -> Backup:
    async with ctx.db.session() as session:
        row = await session.get(Backup, backup_id, with_for_update=True)
        assert row is not None
        if row.status != "in_progress" or row.lease_owner != ctx.worker_id:
            return row
        target = await session.get(BackupTarget, row.target_id)
        assert target is not None
        row.error_message = message[:4000]
        row.completed_at = utcnow()
        retry = row.triggered_by != "pre_deployment" and row.retry_count < target.max_retries
        row.next_attempt_at = (
            utcnow() + timedelta(seconds=target.retry_delay_seconds) if retry else None
        )
        row.lease_owner = row.lease_expires_at = None
        await service.transition(session, row, "failed", actor=BACKUP_ACTOR, reason=message[:500])
        name = target.name
    if not retry:
        await _alert(
            ctx,
            "backup_failed",
            f"backup of {name} failed after {row.retry_count + 1} attempt(s): {message}",
            backup=str(backup_id),
        )
    return row


# -- verification, drills, restores -----------------------------------------------------------


def _reader(
    storage: Storage, backup: Backup, keyring: Keyring, progress: Progress | None = None
) -> Any:
    return read_backup(
        storage.read(backup.object_key),
        keyring,
        checksum=backup.checksum_sha256,
        expected_size=backup.size_bytes,
        progress=progress,
    )


async def _completed(ctx: BackupContext, backup_id: uuid.UUID) -> tuple[Backup, BackupTarget]:
    backup, target = await _load(ctx, backup_id)
    if backup.status != "completed" or backup.deleted_at is not None:
        raise Conflict(f"backup {backup.name} is {backup.status}: only a completed one can be used")
    return backup, target


async def verify_backup(ctx: BackupContext, backup_id: uuid.UUID) -> Backup:
    """Stream the object back: every tag, the checksum, the zstd frame, then the database's own
    reading of the dump (pg_restore --list, ...). Records the result either way."""
    backup, target = await _completed(ctx, backup_id)
    keyring = ctx.keyring()
    storage = ctx.storage(target)
    try:
        server: URL | None = _source(target, keyring)[1]
    except Exception:
        server = None

    def check() -> str:
        reader = _reader(storage, backup, keyring)
        return database(backup.engine).read_dump(reader, server_url=server)

    try:
        detail, passed = await asyncio.to_thread(check), True
    except Exception as exc:
        detail, passed = describe(exc), False
    async with ctx.db.session() as session:
        row = await session.get(Backup, backup_id, with_for_update=True)
        assert row is not None
        row.integrity_check_passed = passed
        row.integrity_check_at = utcnow()
        row.integrity_detail = detail[:4000]
    if not passed:
        log.error("backup integrity check failed", backup=str(backup_id), detail=detail)
        await _alert(
            ctx,
            "backup_integrity_failed",
            f"integrity check of backup {backup.name} ({target.name}) failed: {detail}",
            backup=str(backup_id),
        )
    return row


async def drill_backup(ctx: BackupContext, backup_id: uuid.UUID) -> Backup:
    """Restore into a scratch database, compare row counts and content checksums per table,
    drop the scratch."""
    backup, target = await _completed(ctx, backup_id)
    keyring = ctx.keyring()
    storage = ctx.storage(target)

    def drill() -> tuple[bool, str]:
        kind, url = _source(target, keyring)
        db = database(kind)
        sums = backup.table_checksums
        with db.scratch(url) as scratch:
            reader = _reader(storage, backup, keyring)
            db.restore(scratch, reader, clean=False, size=backup.size_bytes)
            restored = db.contents(scratch, checksums=sums is not None)
        return drill_verdict(backup.table_counts or {}, sums, restored)

    started = time.monotonic()
    try:
        passed, detail = await asyncio.to_thread(drill)
    except Exception as exc:
        passed, detail = False, f"restore failed: {describe(exc)}"
    detail += f" ({time.monotonic() - started:.1f}s)"
    async with ctx.db.session() as session:
        row = await session.get(Backup, backup_id, with_for_update=True)
        assert row is not None
        row.restore_tested = True
        row.restore_tested_at = utcnow()
        row.restore_test_passed = passed
        row.restore_test_detail = detail[:4000]
        audit.record(
            session, BACKUP_ACTOR, "drill", "backup", row.id, {"passed": passed, "detail": detail}
        )
    log.info("restore drill", backup=str(backup_id), passed=passed, detail=detail)
    if not passed:
        await _alert(
            ctx,
            "backup_drill_failed",
            f"restore drill of backup {backup.name} ({target.name}) failed: {detail}",
            backup=str(backup_id),
        )
    return row


async def restore_backup(
    ctx: BackupContext,
    backup_id: uuid.UUID,
    to: str,
    *,
    actor: Principal,
    clean: bool = False,
    progress: Progress | None = None,
) -> str:
    """Restore a completed backup into the database at `to` (refused if it is not empty unless
    `clean`). Returns a one-line summary. A failure says whether the target was touched."""
    backup, target = await _completed(ctx, backup_id)
    try:
        kind, url = parse_dsn(to)
    except DatabaseError as exc:
        raise BackupFailed(f"--to: {exc}") from None
    if kind != backup.engine:
        raise BackupFailed(f"backup {backup.name} is a {backup.engine} dump; --to is {kind}")
    keyring = ctx.keyring()
    storage = ctx.storage(target)

    def work() -> None:
        reader = _reader(storage, backup, keyring, progress)
        restore_into(kind, url, reader, clean=clean, size=backup.size_bytes)

    started = time.monotonic()
    try:
        await asyncio.to_thread(work)
    except PilothouseError:
        raise
    except Exception as exc:
        raise BackupFailed(f"restore of {backup.name} failed: {restore_failure(exc)}") from None
    summary = f"restored {backup.name} into {safe_dsn(url)} in {time.monotonic() - started:.1f}s"
    async with ctx.db.session() as session:
        audit.record(
            session, actor, "restore", "backup", backup.id, {"to": safe_dsn(url), "clean": clean}
        )
    return summary


# -- housekeeping -------------------------------------------------------------------------------


async def reconcile_interrupted(ctx: BackupContext) -> list[uuid.UUID]:
    """Backups whose runner stopped renewing its lease: failed, staged data removed, retried."""
    stale = await ctx.leases.expired(Backup, Backup.status == "in_progress")
    done = []
    for backup_id in stale:
        async with ctx.db.session(write=False) as session:
            owner = await session.scalar(
                sa.select(Backup.lease_owner).where(Backup.id == backup_id)
            )
        # Ours now (if still expired and still that owner's), so _record_failure accepts it.
        if owner is None or not await ctx.leases.reclaim(
            Backup, backup_id, Backup.status == "in_progress", Backup.lease_owner == owner
        ):
            continue
        await _record_failure(
            ctx,
            backup_id,
            f"interrupted: the process running it ({owner}) stopped before it finished",
        )
        await _discard_object(ctx, backup_id)
        done.append(backup_id)
        log.warning("reconciled interrupted backup", backup=str(backup_id), owner=owner)
    return done


async def _discard_object(ctx: BackupContext, backup_id: uuid.UUID) -> None:
    backup, target = await _load(ctx, backup_id)
    storage = ctx.storage(target)

    def discard() -> None:
        for staged in storage.staged():
            if staged.key == backup.object_key:
                storage.discard(staged)
        storage.delete(backup.object_key)

    try:
        await asyncio.to_thread(discard)
    except Exception as exc:
        log.error("could not remove a failed backup's data", backup=str(backup_id), exc_info=exc)


async def cleanup(ctx: BackupContext, *, now: datetime | None = None) -> dict[str, int]:
    """Delete expired objects, then mark their records expired (soft-deleted); remove orphans
    (staged uploads or partial files no running backup owns)."""
    now = now or utcnow()
    await reconcile_interrupted(ctx)
    async with ctx.db.session(write=False) as session:
        rows = (
            await session.execute(
                sa.select(Backup, BackupTarget)
                .join(BackupTarget, BackupTarget.id == Backup.target_id)
                .where(
                    Backup.status.in_(("completed", "failed")),
                    Backup.retention_expires_at <= now,
                    Backup.deleted_at.is_(None),
                )
            )
        ).all()
        expired = [(row[0], row[1]) for row in rows]
        targets = list(await session.scalars(sa.select(BackupTarget)))
        running = set(
            await session.scalars(
                sa.select(Backup.object_key).where(Backup.status == "in_progress")
            )
        )
    figures = {"expired": 0, "orphans": 0, "errors": 0}
    for backup, target in expired:
        try:
            await asyncio.to_thread(ctx.storage(target).delete, backup.object_key)
        except Exception as exc:
            figures["errors"] += 1
            log.error("could not delete expired backup", backup=str(backup.id), exc_info=exc)
            continue  # the record stays, so the next cleanup tries again
        async with ctx.db.session() as session:
            row = await session.get(Backup, backup.id, with_for_update=True)
            if row is None or row.status not in ("completed", "failed"):
                continue
            row.deleted_at = utcnow()
            await service.transition(
                session, row, "expired", actor=BACKUP_ACTOR, reason="retention ended"
            )
        figures["expired"] += 1
    cutoff = now - timedelta(seconds=max(ctx.lease_seconds * 4, 60))
    seen: set[str] = set()
    for target in targets:
        identity = repr(sorted(target.storage.items()))
        if identity in seen:
            continue
        seen.add(identity)
        try:
            storage = ctx.storage(target)
            staged = await asyncio.to_thread(storage.staged)
            for item in staged:
                if item.key not in running and item.started_at < cutoff:
                    await asyncio.to_thread(storage.discard, item)
                    figures["orphans"] += 1
        except Exception as exc:
            figures["errors"] += 1
            log.error("orphan sweep failed", target=target.name, exc_info=exc)
    return figures


# -- scheduling -------------------------------------------------------------------------------


async def claim_slot(ctx: BackupContext, job: str, key: str, slot: datetime) -> bool:
    """Whoever inserts (job, key, slot) first runs it; True for the winner."""
    return await ctx.leases.claim_slot(job, key, slot)


async def enabled_targets(ctx: BackupContext) -> list[BackupTarget]:
    """Live targets whose schedules run (one query per worker tick, for backups and drills)."""
    async with ctx.db.session(write=False) as session:
        return list(
            await session.scalars(
                sa.select(BackupTarget).where(
                    BackupTarget.deleted_at.is_(None), BackupTarget.enabled.is_(True)
                )
            )
        )


async def schedule_due(
    ctx: BackupContext, now: datetime, targets: list[BackupTarget]
) -> list[uuid.UUID]:
    """Create the scheduled backups whose slot has come (once per target and slot)."""
    created = []
    for target in targets:
        if target.schedule is None:
            continue
        slot = due_slot(target.schedule, now, since=target.created_at, window=ctx.catchup)
        if slot is None:
            continue
        try:
            async with ctx.db.session() as session:
                exists = await session.scalar(
                    sa.select(Backup.id).where(
                        Backup.target_id == target.id, Backup.scheduled_for == slot
                    )
                )
                if exists is not None:
                    continue
                backup = await service.new_backup(
                    session,
                    target,
                    ctx.storage(target),
                    trigger="scheduled",
                    actor=BACKUP_ACTOR,
                    scheduled_for=slot,
                )
                created.append(backup.id)
        except IntegrityError:
            continue  # another worker created it first
    return created


async def retry_due(ctx: BackupContext, now: datetime) -> list[uuid.UUID]:
    """Failed backups whose retry time has come go back to in_progress (unclaimed)."""
    async with ctx.db.session(write=False) as session:
        ids = list(
            await session.scalars(
                sa.select(Backup.id).where(
                    Backup.status == "failed",
                    Backup.next_attempt_at.is_not(None),
                    Backup.next_attempt_at <= now,
                    Backup.deleted_at.is_(None),
                )
            )
        )
    retried = []
    for backup_id in ids:
        async with ctx.db.session() as session:
            row = await session.get(Backup, backup_id, with_for_update=True)
            if row is None or row.status != "failed" or row.next_attempt_at is None:
                continue
            row.retry_count += 1
            row.next_attempt_at = None
            row.completed_at = None
            await service.transition(
                session, row, "in_progress", actor=BACKUP_ACTOR, reason=f"retry {row.retry_count}"
            )
            retried.append(backup_id)
    return retried


async def runnable(ctx: BackupContext) -> list[uuid.UUID]:
    """Backups waiting for a runner, oldest first."""
    async with ctx.db.session(write=False) as session:
        return list(
            await session.scalars(
                sa.select(Backup.id)
                .where(Backup.status == "in_progress", Backup.lease_owner.is_(None))
                .order_by(Backup.created_at)
                .limit(20)
            )
        )


async def drills_due(
    ctx: BackupContext, now: datetime, targets: list[BackupTarget]
) -> list[uuid.UUID]:
    """For each target whose drill slot has come (and this worker won it): its newest completed,
    verified backup."""
    chosen = []
    for target in targets:
        if target.drill_schedule is None:
            continue
        slot = due_slot(target.drill_schedule, now, since=target.created_at, window=ctx.catchup)
        if slot is None:
            continue
        async with ctx.db.session(write=False) as session:
            newest = await session.scalar(
                sa.select(Backup.id)
                .where(
                    Backup.target_id == target.id,
                    Backup.status == "completed",
                    Backup.deleted_at.is_(None),
                    Backup.integrity_check_passed.is_not(False),
                )
                .order_by(Backup.started_at.desc())
                .limit(1)
            )
        if newest is None:
            continue  # nothing to drill yet; the slot stays unclaimed until a backup exists
        if await claim_slot(ctx, "drill", str(target.id), slot):
            chosen.append(newest)
    return chosen


async def cleanup_due(ctx: BackupContext, now: datetime) -> bool:
    slot = due_slot(ctx.cleanup_schedule, now, since=now - ctx.catchup, window=ctx.catchup)
    return slot is not None and await claim_slot(ctx, "cleanup", "all", slot)


# -- pre-deployment backups --------------------------------------------------------------------


def pre_deploy_hook(ctx: BackupContext) -> Callable[[Any, Any], Any]:
    """The release engine's pre-deployment hook: back up every target of the deployment's
    environment marked before_deploy, and fail the deployment if one cannot be taken."""

    async def hook(deployment: Any, svc: Any) -> uuid.UUID | None:
        async with ctx.db.session(write=False) as session:
            targets: Sequence[BackupTarget] = (
                await session.scalars(
                    sa.select(BackupTarget).where(
                        BackupTarget.deleted_at.is_(None),
                        BackupTarget.enabled.is_(True),
                        BackupTarget.before_deploy.is_(True),
                        BackupTarget.environment_id == svc.environment_id,
                    )
                )
            ).all()
        last = None
        for target in targets:
            async with ctx.db.session() as session:
                backup = await service.new_backup(
                    session,
                    target,
                    ctx.storage(target),
                    trigger="pre_deployment",
                    actor=BACKUP_ACTOR,
                    deployment_id=deployment.id,
                    artifact_id=deployment.artifact_id,
                )
            done = await run_backup(ctx, backup.id)
            if done.status != "completed":
                raise RolloutFailed(
                    f"pre-deployment backup of {target.name} failed: {done.error_message}"
                )
            last = done.id
        return last

    return hook


def data_restore_hook(ctx: BackupContext) -> Callable[..., Any]:
    """The release engine's data-restore hook (`rollback --with-data`): restore a completed
    backup into the database it was taken from, replacing what it holds, through
    `restore_backup` (authenticated as it streams; PostgreSQL in one transaction)."""

    async def hook(backup_id: uuid.UUID, actor: Principal, progress: Progress | None = None) -> str:
        _, target = await _completed(ctx, backup_id)
        dsn = service.target_dsn(target, ctx.keyring())
        return await restore_backup(ctx, backup_id, dsn, actor=actor, clean=True, progress=progress)

    return hook
