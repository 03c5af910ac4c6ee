"""/api/v1/backup-targets and /api/v1/backups: what is backed up, and every backup's record.

Backups themselves run in the worker (scheduled, retried, pre-deployment, or queued here);
restores and drills on demand run on the host with `pilothouse backup restore|drill`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from pilothouse.access import require
from pilothouse.backups import freshness, service
from pilothouse.backups.models import BackupTarget
from pilothouse.backups.schemas import (
    BackupRead,
    BackupRequest,
    TargetCreate,
    TargetRead,
    TargetUpdate,
)
from pilothouse.backups.storage import open_storage
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.deps import Caller, Keys, Session

router = APIRouter(tags=["backups"])


async def _read(
    session: Session, request: Request, targets: Sequence[BackupTarget]
) -> list[TargetRead]:
    """Targets as shown, with their freshness (newest verified backup, overdue or not)."""
    settings: Settings = request.app.state.settings
    grace = timedelta(minutes=settings.backup_freshness_grace_minutes)
    states = await freshness.of_targets(session, targets, utcnow(), grace)
    shown = []
    for target in targets:
        read = TargetRead.model_validate(target)
        state = states[target.id]
        read.last_verified_at = state.last_verified_at
        read.last_verified_age_seconds = state.age_seconds
        read.due_by = state.due_by
        read.overdue = state.overdue
        shown.append(read)
    return shown


@router.post(
    "/backup-targets",
    response_model=TargetRead,
    status_code=201,
    summary="Register a database to back up (admin); its DSN is stored encrypted",
    description=(
        "Before saving, pilothouse connects to the database and checks its dump tool against "
        "the server (pg_dump's major version, mariadb-dump's release, an SQLite file's "
        "integrity); a failure is a 422 on `dsn` and saves nothing. `?check=false` skips it."
    ),
)
async def create_target(
    body: TargetCreate,
    request: Request,
    session: Session,
    caller: Caller,
    keys: Keys,
    check: bool = Query(
        default=True, description="Test the connection and the dump tool before saving."
    ),
) -> TargetRead:
    target = await service.create_target(session, caller, keys, body, check=check)
    return (await _read(session, request, [target]))[0]


@router.get(
    "/backup-targets",
    response_model=list[TargetRead],
    summary="List backup targets with their freshness (newest verified backup, overdue)",
)
async def list_targets(request: Request, session: Session, caller: Caller) -> list[TargetRead]:
    return await _read(session, request, await service.list_targets(session, caller))


@router.get("/backup-targets/{ref}", response_model=TargetRead, summary="One target (id or name)")
async def get_target(ref: str, request: Request, session: Session, caller: Caller) -> TargetRead:
    return (await _read(session, request, [await service.get_target(session, caller, ref)]))[0]


@router.patch(
    "/backup-targets/{ref}",
    response_model=TargetRead,
    summary="Change a target (admin); a new DSN is checked like a new target's",
)
async def update_target(
    ref: str,
    body: TargetUpdate,
    request: Request,
    session: Session,
    caller: Caller,
    keys: Keys,
    check: bool = Query(
        default=True, description="Test a new DSN's connection and dump tool before saving."
    ),
) -> TargetRead:
    target = await service.update_target(session, caller, keys, ref, body, check=check)
    return (await _read(session, request, [target]))[0]


@router.delete(
    "/backup-targets/{ref}",
    status_code=204,
    summary="Remove a target (admin); its backups stay until their retention ends",
)
async def delete_target(ref: str, session: Session, caller: Caller) -> Response:
    await service.delete_target(session, caller, ref)
    return Response(status_code=204)


@router.post(
    "/backup-targets/{ref}/backups",
    response_model=BackupRead,
    status_code=202,
    summary="Queue a manual backup (operator); the worker runs it, poll GET /backups/{id}",
)
async def queue_backup(
    ref: str, body: BackupRequest, request: Request, session: Session, caller: Caller
) -> BackupRead:
    require(caller, "run_backups")
    target = await service.get_target(session, caller, ref)
    settings: Settings = request.app.state.settings
    storage = open_storage(target.storage, settings.data_dir)
    backup = await service.new_backup(
        session, target, storage, trigger="manual", actor=caller, reason=body.reason
    )
    return BackupRead.model_validate(backup)


@router.get("/backups", response_model=list[BackupRead], summary="List backups, newest first")
async def list_backups(
    session: Session,
    caller: Caller,
    target: str | None = Query(default=None, description="Target id or name."),
    status: Literal["in_progress", "completed", "failed"] | None = Query(
        default=None, description="Only this status."
    ),
    limit: int = Query(default=50, ge=1, le=1000, description="At most this many."),
) -> list[BackupRead]:
    rows = await service.list_backups(session, caller, target=target, status=status, limit=limit)
    return [BackupRead.model_validate(b) for b in rows]


@router.get("/backups/{ref}", response_model=BackupRead, summary="One backup (id or name)")
async def get_backup(ref: str, session: Session, caller: Caller) -> BackupRead:
    return BackupRead.model_validate(await service.get_backup(session, caller, ref))
