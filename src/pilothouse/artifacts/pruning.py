"""Pruning old artifacts (seed 001; the rule is artifacts/retention.py).

- `artifacts.prune` (once per hour slot across workers, registered in worker.CAPABILITIES):
  for each service with artifacts older than 30 days, works out what a rollback could return to
  (deployments/rollback.py over the service's release history) and what a deployment under way
  rolls out, marks every other artifact unused for 30 days `pruned_at`, with one audit entry
  (action `prune`) each, and removes the files pilothouse holds for it: the log files of its
  replicas that no longer run. One transaction per service; files are removed after it
  commits, and only under the data directory.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import system_actor
from pilothouse.artifacts import retention
from pilothouse.artifacts.models import Artifact
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import ACTIVE_STATUSES, Deployment
from pilothouse.replicas.models import Replica

log = get_logger("pilothouse.worker")

PRUNE_EVERY = 3600.0
ACTOR = system_actor("retention")
ENDED = ("stopped", "failed")


@dataclass
class Pruned:
    """What one pass did."""

    artifacts: list[uuid.UUID] = field(default_factory=list)
    files: int = 0


def _old(now: datetime) -> sa.ColumnElement[bool]:
    """Registered more than 30 days ago (so possibly unused for 30 days), not pruned or deleted."""
    return sa.and_(
        Artifact.pruned_at.is_(None),
        Artifact.deleted_at.is_(None),
        Artifact.created_at < now - retention.PRUNE_AFTER,
    )


async def prune_service(
    session: AsyncSession, service_id: uuid.UUID, candidates: list[Artifact], now: datetime
) -> tuple[list[uuid.UUID], list[str]]:
    """Prune what the rule prunes among `candidates` (one service's); returns the pruned ids and
    the log files to remove once the transaction commits."""
    history = await deployments.release_history(session, service_id)
    live = await session.scalar(
        sa.select(Artifact.id).where(Artifact.service_id == service_id, Artifact.deployed.is_(True))
    )
    # Also kept: what a deployment under way is rolling out (it may become live).
    active = await session.scalars(
        sa.select(Deployment.artifact_id).where(
            Deployment.service_id == service_id,
            Deployment.status.in_(ACTIVE_STATUSES),
            Deployment.artifact_id.is_not(None),
        )
    )
    keep = retention.rollback_keep(history, str(live) if live else None) | {
        str(ident) for ident in active
    }
    facts = [
        retention.Facts(id=str(a.id), created_at=a.created_at, deployed_at=a.deployed_at)
        for a in candidates
    ]
    chosen = {uuid.UUID(ident) for ident in retention.prunable(facts, keep, now)}
    files: list[str] = []
    for artifact in candidates:
        if artifact.id not in chosen:
            continue
        artifact.pruned_at = now
        replicas = await session.scalars(
            sa.select(Replica).where(
                Replica.artifact_id == artifact.id,
                Replica.status.in_(ENDED),
                Replica.keep_running.is_(False),
                Replica.log_path.is_not(None),
            )
        )
        removed = 0
        for replica in replicas:
            assert replica.log_path is not None
            files.append(replica.log_path)
            replica.log_path = None
            removed += 1
        audit.record(
            session,
            ACTOR,
            "prune",
            "artifact",
            artifact.id,
            {
                "version": artifact.version,
                "reason": "unused for 30 days and not a rollback target (seed 001)",
                "replica_logs_removed": removed,
            },
        )
    return [a.id for a in candidates if a.id in chosen], files


def remove_files(paths: list[str], data_dir: Path) -> int:
    """Remove the files under `data_dir` among `paths`; returns how many were removed."""
    root = data_dir.resolve()
    removed = 0
    for raw in paths:
        path = Path(raw).resolve()
        if not path.is_relative_to(root):
            log.warning("artifact pruning left a file outside the data directory", path=raw)
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("artifact pruning could not remove a file", path=raw, error=str(exc))
    return removed


async def prune_old(db: Database, data_dir: Path, now: datetime | None = None) -> Pruned:
    """One pass over the store (one transaction per service)."""
    now = now or utcnow()
    async with db.session(write=False) as session:
        services = list(
            await session.scalars(sa.select(Artifact.service_id).where(_old(now)).distinct())
        )
    done = Pruned()
    for service_id in services:
        async with db.session() as session:
            candidates = await session.scalars(
                sa.select(Artifact)
                .where(Artifact.service_id == service_id, _old(now))
                .order_by(Artifact.created_at)
            )
            pruned, files = await prune_service(session, service_id, list(candidates), now)
        done.artifacts.extend(pruned)
        done.files += remove_files(files, data_dir)
    return done


def loops(rt: Runtime) -> list[Loop]:
    async def prune() -> None:
        done = await prune_old(rt.db, rt.data_dir)
        if done.artifacts:
            log.info("artifacts pruned", artifacts=len(done.artifacts), files=done.files)

    return [Loop("artifacts.prune", prune, PRUNE_EVERY, once=True)]
