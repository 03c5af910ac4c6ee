"""Backup targets and backup records: queries, rules and the one status transition."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, visible
from pilothouse.audit import service as audit
from pilothouse.backups.databases import DatabaseError, database, parse_dsn, safe_dsn
from pilothouse.backups.models import Backup, BackupTarget
from pilothouse.backups.retention import expires_at, merged_policy
from pilothouse.backups.schedule import development_refusal
from pilothouse.backups.schemas import TargetCreate, TargetUpdate
from pilothouse.backups.storage import Storage
from pilothouse.backups.transitions import TABLE
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import Keyring, open_value, seal_value, sealed_key_id
from pilothouse.core.db import id_or_name, one_by_ref
from pilothouse.core.statemachine import check_transition
from pilothouse.environments import service as environments
from pilothouse.environments.models import Environment
from pilothouse.errors import Conflict, NotFound, ValidationFailed
from pilothouse.history import service as history

SELF_TARGET = "pilothouse"


def _visible_targets(actor: Principal) -> sa.ColumnElement[bool]:
    return visible(actor, BackupTarget.owner_id, BackupTarget.environment_id)


def _parse(dsn: str) -> tuple[str, str, str]:
    """(engine, database name, display form) of a DSN, or a 422 naming the field."""
    try:
        engine, url = parse_dsn(dsn)
    except DatabaseError as exc:
        raise ValidationFailed("dsn", str(exc)) from None
    name = url.database or ""
    if engine != "sqlite" and not name:
        raise ValidationFailed("dsn", "must name the database (…/dbname)")
    return engine, name, safe_dsn(url)


def _check_development(environment_type: str | None, schedule: str | None, *, force: bool) -> None:
    """A 422 on `schedule` when it would back up a development environment unforced."""
    rule = development_refusal(environment_type, schedule, force=force)
    if rule is not None:
        raise ValidationFailed("schedule", rule)


async def get_target(session: AsyncSession, actor: Principal, ref: str) -> BackupTarget:
    """A live target the actor can see, by id or name; otherwise NotFound."""
    query = sa.select(BackupTarget).where(
        BackupTarget.deleted_at.is_(None),
        _visible_targets(actor),
        id_or_name(BackupTarget.id, BackupTarget.name, ref),
    )
    target = await session.scalar(query)
    if target is None:
        raise NotFound(f"backup target {ref!r} not found")
    return target


async def list_targets(session: AsyncSession, actor: Principal) -> Sequence[BackupTarget]:
    query = (
        sa.select(BackupTarget)
        .where(BackupTarget.deleted_at.is_(None), _visible_targets(actor))
        .order_by(BackupTarget.name)
    )
    return (await session.scalars(query)).all()


async def check_connection(dsn: str) -> str:
    """Connect to the database and check its dump tool against the server (blocking work runs
    in a thread); a 422 on `dsn` saying what failed."""
    kind, url = parse_dsn(dsn)
    try:
        return await asyncio.to_thread(database(kind).check, url)
    except DatabaseError as exc:
        raise ValidationFailed(
            "dsn", f"{exc} (checked before saving; --no-check or ?check=false skips it)"
        ) from None


async def create_target(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    data: TargetCreate,
    *,
    check: bool = False,
) -> BackupTarget:
    """Register a database to back up (admin: the DSN grants access to all of its data). With
    `check`, the connection and the dump tool are tried first and a failure saves nothing."""
    require(actor, "manage_backups")
    dsn = data.dsn.get_secret_value()
    engine, database, display = _parse(dsn)
    env_id, schedule = None, data.schedule
    if data.environment:
        env = await environments.get_environment(session, actor, data.environment)
        env_id = env.id
        if env.type == "development" and "schedule" not in data.model_fields_set:
            schedule = None  # seed 000: development is not backed up by default
        _check_development(env.type, schedule, force=data.force)
    taken = await session.scalar(
        sa.select(BackupTarget.id).where(
            BackupTarget.name == data.name, BackupTarget.deleted_at.is_(None)
        )
    )
    if taken is not None:
        raise Conflict(f"backup target {data.name!r} already exists")
    if check:
        await check_connection(dsn)
    target = BackupTarget(
        owner_id=actor.user_id,
        environment_id=env_id,
        name=data.name,
        engine=engine,
        database_name=database,
        dsn_encrypted=seal_value(dsn, keyring),
        dsn_display=display,
        schedule=schedule,
        drill_schedule=data.drill_schedule,
        storage=data.storage.model_dump(exclude_none=True),
        retention=data.retention or {},
        max_retries=data.max_retries,
        retry_delay_seconds=data.retry_delay_seconds,
        before_deploy=data.before_deploy,
        enabled=data.enabled,
        content_checksums=data.content_checksums,
    )
    session.add(target)
    await session.flush()
    audit.record(
        session, actor, "create", "backup_target", target.id, {"name": target.name, "dsn": display}
    )
    return target


async def update_target(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    ref: str,
    data: TargetUpdate,
    *,
    check: bool = False,
) -> BackupTarget:
    """Change a target (admin); a new DSN is checked first when `check`, like a new target's."""
    require(actor, "manage_backups")
    target = await get_target(session, actor, ref)
    changes = data.model_dump(exclude_unset=True)
    force = changes.pop("force", False)
    if changes.get("schedule") and target.environment_id is not None:
        env = await session.get(Environment, target.environment_id)
        _check_development(env.type if env else None, changes["schedule"], force=force)
    if "dsn" in changes:
        if data.dsn is None:
            raise ValidationFailed("dsn", "must be a database URL, not null")
        dsn = data.dsn.get_secret_value()
        engine, database, display = _parse(dsn)
        if check:
            await check_connection(dsn)
        target.engine, target.database_name, target.dsn_display = engine, database, display
        target.dsn_encrypted = seal_value(dsn, keyring)
        changes["dsn"] = display
    if data.storage is not None:
        target.storage = data.storage.model_dump(exclude_none=True)
    for key, value in changes.items():
        if key in ("dsn", "storage"):
            continue
        if key == "retention":
            target.retention = value or {}
        elif value is not None or key in ("schedule", "drill_schedule"):  # null: no schedule
            setattr(target, key, value)
    target.updated_at = utcnow()
    audit.record(session, actor, "update", "backup_target", target.id, changes)
    return target


async def delete_target(session: AsyncSession, actor: Principal, ref: str) -> BackupTarget:
    """Soft delete: schedules stop; its backups stay until their retention ends."""
    require(actor, "manage_backups")
    target = await get_target(session, actor, ref)
    target.deleted_at = utcnow()
    target.enabled = False
    audit.record(session, actor, "delete", "backup_target", target.id, {"name": target.name})
    return target


async def reseal_batch(session: AsyncSession, keyring: Keyring, *, batch: int = 500) -> int:
    """Re-encrypt up to `batch` target DSNs still sealed with an older key; returns how many.
    `pilothouse keys rotate` calls it, one transaction per batch, until it returns 0."""
    done = 0
    query = sa.select(BackupTarget).order_by(BackupTarget.id).with_for_update()
    for target in await session.scalars(query):
        if sealed_key_id(target.dsn_encrypted) == keyring.current:
            continue
        target.dsn_encrypted = seal_value(open_value(target.dsn_encrypted, keyring), keyring)
        done += 1
        if done == batch:
            break
    return done


def target_dsn(target: BackupTarget, keyring: Keyring) -> str:
    """The target's real DSN (secret: never log or return it)."""
    return open_value(target.dsn_encrypted, keyring)


async def ensure_self_target(
    session: AsyncSession, actor: Principal, keyring: Keyring, store_url: str
) -> BackupTarget:
    """The target for pilothouse's own database, created on first use."""
    existing = await session.scalar(
        sa.select(BackupTarget).where(
            BackupTarget.name == SELF_TARGET, BackupTarget.deleted_at.is_(None)
        )
    )
    if existing is not None:
        return existing
    return await create_target(
        session,
        actor,
        keyring,
        TargetCreate(name=SELF_TARGET, dsn=store_url),
    )


# -- backups ---------------------------------------------------------------------------------


def _visible_backups(actor: Principal) -> sa.ColumnElement[bool]:
    return Backup.target_id.in_(sa.select(BackupTarget.id).where(_visible_targets(actor)))


async def get_backup(session: AsyncSession, actor: Principal, ref: str) -> Backup:
    """A backup the actor can see, by id, unique id prefix or name; soft-deleted is 404."""
    query = (
        sa.select(Backup)
        .where(Backup.deleted_at.is_(None), _visible_backups(actor))
        .order_by(Backup.id)
    )
    found: Backup = await one_by_ref(
        session, query, Backup.id, ref, "backup", name_column=Backup.name
    )
    return found


async def list_backups(
    session: AsyncSession,
    actor: Principal,
    *,
    target: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> Sequence[Backup]:
    """Newest first."""
    query = sa.select(Backup).where(Backup.deleted_at.is_(None), _visible_backups(actor))
    if target:
        query = query.where(Backup.target_id == (await get_target(session, actor, target)).id)
    if status:
        query = query.where(Backup.status == status)
    query = query.order_by(Backup.started_at.desc(), Backup.id).limit(limit)
    return (await session.scalars(query)).all()


async def transition(
    session: AsyncSession, backup: Backup, to: str, *, actor: Principal, reason: str | None = None
) -> Backup:
    """The only way a backup's status changes: checks the table, writes status_history."""
    check_transition(TABLE, "backup", backup.status, to)
    before = backup.status
    backup.status = to
    backup.updated_at = utcnow()
    history.record_change(session, "backup", backup.id, before, to, actor=actor, reason=reason)
    return backup


def object_key(environment: str, started_at: datetime, backup_id: uuid.UUID) -> str:
    """`<environment>/<yyyy>/<mm>/<dd>/<backup_id>.dump.zst.enc`."""
    return f"{environment}/{started_at:%Y/%m/%d}/{backup_id}.dump.zst.enc"


async def environment_name(session: AsyncSession, target: BackupTarget) -> str:
    if target.environment_id is None:
        return SELF_TARGET if target.name == SELF_TARGET else "unassigned"
    env = await session.get(Environment, target.environment_id)
    return env.name if env is not None else "unassigned"


async def new_backup(
    session: AsyncSession,
    target: BackupTarget,
    storage: Storage,
    *,
    trigger: str,
    actor: Principal,
    scheduled_for: datetime | None = None,
    deployment_id: uuid.UUID | None = None,
    artifact_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> Backup:
    """A backup record in_progress, not yet claimed by anyone; a worker (or the CLI) runs it."""
    now = utcnow()
    env = await environment_name(session, target)
    backup_id = uuid.uuid4()
    key = object_key(env, now, backup_id)
    backup = Backup(
        id=backup_id,
        target_id=target.id,
        environment_id=target.environment_id,
        name=f"backup_{now:%Y%m%d_%H%M%S}",
        backup_type="manual" if trigger == "manual" else "full",
        environment=env,
        status="in_progress",
        triggered_by=trigger,
        scheduled_for=scheduled_for,
        started_at=now,
        engine=target.engine,
        database_name=target.database_name,
        storage_kind=storage.kind,
        object_key=key,
        storage_location=storage.location(key),
        storage_url=storage.url(key),
        # Provisional: fixed when it completes and its GFS class is known.
        retention_expires_at=expires_at(now, "daily", merged_policy(target.retention)),
        deployment_id=deployment_id,
        artifact_id=artifact_id,
    )
    session.add(backup)
    await session.flush()
    history.record_change(
        session, "backup", backup.id, None, "in_progress", actor=actor, reason=reason or trigger
    )
    return backup


async def earlier_scheduled(
    session: AsyncSession, target_id: uuid.UUID, started_at: datetime
) -> list[datetime]:
    """Start times of the target's completed scheduled backups in the same month (for GFS)."""
    month_start = started_at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    query = sa.select(Backup.started_at).where(
        Backup.target_id == target_id,
        Backup.triggered_by == "scheduled",
        Backup.status.in_(("completed", "expired")),
        Backup.started_at >= month_start - timedelta(days=7),
        Backup.started_at < started_at,
    )
    return list(await session.scalars(query))


async def last_completed(
    session: AsyncSession, actor: Principal, environment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """When the newest completed backup the actor can see finished, per environment (the
    dashboard's "last backup" column)."""
    if not environment_ids:
        return {}
    rows = await session.execute(
        sa.select(Backup.environment_id, sa.func.max(Backup.completed_at))
        .where(
            Backup.environment_id.in_(environment_ids),
            Backup.status == "completed",
            Backup.deleted_at.is_(None),
            _visible_backups(actor),
        )
        .group_by(Backup.environment_id)
    )
    return {env: at for env, at in rows if env is not None and at is not None}
