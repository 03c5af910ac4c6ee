"""Rollback with data: when the release being left ran a migration and took a pre-deployment
backup, `rollback --with-data` restores that backup as part of the rollback.

Which backup: the release being left went live through a `deploy` (`arrival_of`: walking back
from the newest deployment that went live, past the scales, restarts, config updates, stops and
starts of that release; none when it came back through a rollback); that deployment records
whether its migration command ran (`migration_applied`) and the backups its pre-deployment hook
took (backups.deployment_id). Those backups hold the data as it was under the release that was
live before it (the deployment's `previous_artifact_id`), so they fit a rollback to that release
only; a rollback further back restores one release at a time.
`offer()` decides this over plain values (table-tested); `data_restore()` reads it from the store.

When: the release engine restores before the rollout, the mirror of a deployment that migrates
before its rollout. Every backup goes through the backups capability's restore path (a hook it
registers: the object is authenticated as it streams, PostgreSQL restores in one transaction
killed before commit on any error). A failed restore fails the rollback with the reason and the
rollout never starts, so the release being left stays live on its data; `data_restored_at` is
set only once every backup was restored, with an audit entry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.artifacts.models import Artifact
from pilothouse.audit import service as audit
from pilothouse.backups.models import Backup, BackupTarget
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.deployments.models import Deployment
from pilothouse.drivers.base import RolloutFailed
from pilothouse.history.models import StatusHistory

#: The backups capability registers one: restore backup `id` into the database it was taken
#: from, replacing what it holds; `progress` gets the bytes of the stored object read so far.
#: Returns a one-line summary; raises with a message saying whether the database was touched.
DataRestoreHook = Callable[[uuid.UUID, Principal, Callable[[int], None]], Awaitable[str]]

REPORT_EVERY = 0.5  # seconds between progress checks
STEP = 5  # a progress line per this many percent


@dataclass(frozen=True)
class BackupFact:
    """A pre-deployment backup as the decision sees it."""

    id: uuid.UUID
    name: str
    target: str
    database: str
    taken_at: datetime | None
    stored_bytes: int | None
    status: str = "completed"
    integrity_check_passed: bool | None = True


@dataclass(frozen=True)
class Arrival:
    """The deployment through which the live release went live."""

    deployment_id: uuid.UUID
    version: str
    previous_artifact_id: uuid.UUID | None
    previous_version: str | None
    migration_applied: bool


@dataclass(frozen=True)
class Offer:
    """The data restore a rollback can carry: its backups, or why there is none."""

    from_version: str | None = None  # the release whose migration the restore undoes
    backups: tuple[BackupFact, ...] = ()
    reason: str | None = None

    @property
    def available(self) -> bool:
        return bool(self.backups)

    @property
    def ids(self) -> list[str]:
        return [str(b.id) for b in self.backups]


@dataclass(frozen=True)
class WentLive:
    """One deployment of the service that went live (reached success), oldest first."""

    deployment_id: uuid.UUID
    artifact_id: uuid.UUID
    event: str


#: Deployments that keep the live release as it is (same artifact, same data).
KEEPS_RELEASE = frozenset({"scale", "restart", "config_update", "stop", "start"})


def arrival_of(history: Sequence[WentLive], live_artifact_id: uuid.UUID) -> uuid.UUID | None:
    """The `deploy` through which the live release arrived (pure): walk back from the newest
    deployment that went live, past the ones that kept that release (scale, restart,
    config_update, stop, start; an automatic rollback that returned to it after a failure), to
    a deploy of it. None when it came back through a rollback: a pre-deployment backup of an
    earlier deploy of it no longer fits its data."""
    for i in range(len(history) - 1, -1, -1):
        step = history[i]
        if step.artifact_id != live_artifact_id:
            return None
        if step.event == "deploy":
            return step.deployment_id
        if step.event == "rollback":
            kept = i > 0 and history[i - 1].artifact_id == live_artifact_id
            if not kept:
                return None
        elif step.event not in KEEPS_RELEASE:
            return None
    return None


def offer(
    live_version: str,
    arrival: Arrival | None,
    target_artifact_id: uuid.UUID,
    target_version: str,
    backups: Sequence[BackupFact],
) -> Offer:
    """The data restore available to a rollback from `live_version` to the target (pure)."""
    if arrival is None:
        return Offer(
            reason=f"{live_version} went live through a rollback, not a deployment that "
            "migrated: no pre-deployment backup belongs to it"
        )
    version = arrival.version
    if not arrival.migration_applied:
        return Offer(version, reason=f"{version} ran no migration: its data needs no restore")
    if not backups:
        return Offer(
            version,
            reason=f"{version} ran a migration but took no pre-deployment backup "
            "(no backup target of its environment is marked before_deploy)",
        )
    if arrival.previous_artifact_id != target_artifact_id:
        before = arrival.previous_version or "nothing"
        return Offer(
            version,
            reason=f"the pre-deployment backup of {version} holds the data of {before}, not of "
            f"{target_version}: roll back one release at a time to restore data",
        )
    for backup in backups:
        if backup.status != "completed":
            return Offer(
                version,
                reason=f"pre-deployment backup {backup.name} ({backup.target}) is "
                f"{backup.status}: it cannot be restored",
            )
        if backup.integrity_check_passed is False:
            return Offer(
                version,
                reason=f"pre-deployment backup {backup.name} ({backup.target}) failed its "
                "integrity check: it will not be restored",
            )
    return Offer(version, tuple(backups))


# -- reading the store -------------------------------------------------------------------------


async def _facts(session: AsyncSession, where: sa.ColumnElement[bool]) -> list[BackupFact]:
    rows = await session.execute(
        sa.select(Backup, BackupTarget.name)
        .join(BackupTarget, BackupTarget.id == Backup.target_id)
        .where(where)
        .order_by(Backup.started_at, Backup.id)
    )
    return [
        BackupFact(
            id=b.id,
            name=b.name,
            target=target,
            database=b.database_name,
            taken_at=b.completed_at or b.started_at,
            stored_bytes=b.stored_bytes,
            status="deleted" if b.deleted_at is not None and b.status == "completed" else b.status,
            integrity_check_passed=b.integrity_check_passed,
        )
        for b, target in rows
    ]


async def _went_live(
    session: AsyncSession, service_id: uuid.UUID, before: datetime | None
) -> list[WentLive]:
    """The service's deployments that went live, in the order they did (before `before`)."""
    query = (
        sa.select(Deployment.id, Deployment.artifact_id, Deployment.event_type)
        .join(
            StatusHistory,
            sa.and_(
                StatusHistory.entity_type == "deployment",
                StatusHistory.entity_id == Deployment.id,
                StatusHistory.to_status == "success",
            ),
        )
        .where(Deployment.service_id == service_id, Deployment.artifact_id.is_not(None))
        .order_by(StatusHistory.changed_at, Deployment.created_at)
    )
    if before is not None:
        query = query.where(StatusHistory.changed_at < before)
    rows = await session.execute(query)
    return [WentLive(d, a, e) for d, a, e in rows if a is not None]


async def data_restore(
    session: AsyncSession,
    service_id: uuid.UUID,
    live: Artifact,
    target: Artifact,
    *,
    before: datetime | None = None,
) -> Offer:
    """The data restore available to a rollback of a service from `live` to `target` (as the
    history stood `before` a given time, for a rollback already recorded)."""
    arrived_id = arrival_of(await _went_live(session, service_id, before), live.id)
    arrived = await session.get(Deployment, arrived_id) if arrived_id else None
    arrival: Arrival | None = None
    backups: list[BackupFact] = []
    if arrived is not None:
        previous = (
            await session.get(Artifact, arrived.previous_artifact_id)
            if arrived.previous_artifact_id
            else None
        )
        arrival = Arrival(
            arrived.id,
            arrived.version,
            arrived.previous_artifact_id,
            previous.version if previous else None,
            arrived.migration_applied,
        )
        backups = await _facts(
            session,
            sa.and_(Backup.deployment_id == arrived.id, Backup.triggered_by == "pre_deployment"),
        )
    return offer(live.version, arrival, target.id, target.version, backups)


async def data_restore_of(session: AsyncSession, rollback: Deployment) -> Offer:
    """The data restore a recorded rollback carries (with data), or could have carried."""
    if rollback.restore_backup_ids:
        ids = [uuid.UUID(i) for i in rollback.restore_backup_ids]
        left = rollback.previous_artifact_id
        live = await session.get(Artifact, left) if left else None
        facts = await _facts(session, Backup.id.in_(ids))
        return Offer(live.version if live else None, tuple(facts))
    if rollback.previous_artifact_id is None or rollback.artifact_id is None:
        return Offer(reason="nothing was live before this rollback")
    live = await session.get(Artifact, rollback.previous_artifact_id)
    target = await session.get(Artifact, rollback.artifact_id)
    if live is None or target is None:
        return Offer(reason="the releases of this rollback no longer exist")
    return await data_restore(
        session, rollback.service_id, live, target, before=rollback.created_at
    )


def request_audit(
    session: AsyncSession, actor: Principal, rollback: Deployment, found: Offer
) -> None:
    """The audit entry of a rollback recorded with data: which backups it will restore."""
    audit.record(
        session,
        actor,
        "request_data_restore",
        "deployment",
        rollback.id,
        {"from": found.from_version, "to": rollback.version, "backups": found.ids},
    )


# -- carrying it out (the release engine) ------------------------------------------------------


class Log(Protocol):
    async def __call__(
        self,
        message: str,
        *,
        level: str = "info",
        source: str = "deploy",
        metadata: dict[str, Any] | None = None,
    ) -> None: ...


@dataclass
class _Meter:
    """Bytes read so far by a restore running in a thread (one writer, one reader)."""

    done: int = 0
    steps: set[int] = field(default_factory=set)

    def __call__(self, n: int) -> None:
        self.done += n


async def _report(log: Log, label: str, meter: _Meter, total: int | None) -> None:
    """A progress line (with its figures as metadata, for the CLI's bar) every STEP percent."""
    while True:
        await asyncio.sleep(REPORT_EVERY)
        await _progress_line(log, label, meter, total)


async def _progress_line(log: Log, label: str, meter: _Meter, total: int | None) -> None:
    if not total:
        return
    percent = min(100, meter.done * 100 // total)
    step = percent // STEP * STEP
    if step in meter.steps:
        return
    meter.steps.add(step)
    await log(
        f"{label}: {step}% ({meter.done:,} of {total:,} bytes)",
        source="restore",
        metadata={"progress": {"label": label, "done": meter.done, "total": total}},
    )


async def restore_before_rollout(
    db: Database,
    rollback: Deployment,
    hooks: Sequence[DataRestoreHook],
    log: Log,
    *,
    actor: Principal,
) -> None:
    """Restore the backups a rollback with data carries, one after the other; then record it
    (data_restored_at, an audit entry). Raises RolloutFailed with the reason on any failure,
    saying which backups were restored before it."""
    ids = [uuid.UUID(i) for i in rollback.restore_backup_ids or []]
    if not ids:
        return
    if not hooks:
        raise RolloutFailed(
            "data restore: backups are off on this worker (PILOTHOUSE_BACKUPS_ENABLED), so the "
            "data cannot be restored; nothing was changed"
        )
    async with db.session(write=False) as session:
        facts = {f.id: f for f in await _facts(session, Backup.id.in_(ids))}
    restored: list[str] = []
    for backup_id in ids:
        fact = facts.get(backup_id)
        name = fact.name if fact else str(backup_id)
        label = f"restoring {name}" + (f" into {fact.database} ({fact.target})" if fact else "")
        await log(f"{label}: the release being left stays live until it is done", source="restore")
        meter = _Meter()
        total = fact.stored_bytes if fact else None
        reporter = asyncio.create_task(_report(log, label, meter, total))
        try:
            summary = await hooks[0](backup_id, actor, meter)
        except Exception as exc:
            done = f"restored {', '.join(restored)}; " if restored else ""
            raise RolloutFailed(f"data restore failed: {done}{exc}") from None
        finally:
            reporter.cancel()
            # its end (or a progress line that failed) is collected, not raised
            await asyncio.gather(reporter, return_exceptions=True)
        meter.done = total or meter.done
        await _progress_line(log, label, meter, total)
        await log(summary, source="restore")
        restored.append(name)
    async with db.session() as session:
        row = await session.get(Deployment, rollback.id, with_for_update=True)
        assert row is not None
        row.data_restored_at = utcnow()
        audit.record(
            session,
            actor,
            "restore_data",
            "deployment",
            rollback.id,
            {"backups": [str(i) for i in ids], "names": restored},
        )
    await log(f"data restored from {', '.join(restored)}; rolling out {rollback.version}")
