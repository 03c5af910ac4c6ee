"""The automatic rollback row: recorded by deployments/service.py like every other deployment
(its pending history row and its audit entry), leased to the worker that carries it out."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from pilothouse.access import Principal, system_actor
from pilothouse.artifacts import service as artifacts
from pilothouse.audit.models import AuditEntry
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import Deployment
from pilothouse.environments import service as environments
from pilothouse.history.models import StatusHistory
from pilothouse.services import service as services

ENGINE = system_actor("engine")
SHA = "b" * 40


async def _run_to(session: object, deployment: Deployment, *path: str) -> None:
    for to in path:
        await deployments.transition(session, deployment, to, actor=ENGINE)  # type: ignore[arg-type]


async def _service_with_history(db: Database, admin: Principal, *, first_fails: bool) -> Deployment:
    """web with v1 (live unless first_fails) and a failed deployment of v2; returns the failed."""
    async with db.session() as session:
        await environments.create_environment(session, admin, name="prod")
        await services.create_service(session, admin, environment="prod", name="web", resources={})
        for version in ("v1.0.0", "v2.0.0"):
            await artifacts.register_artifact(
                session, admin, service="web", version=version, commit_sha=SHA
            )
        if not first_fails:
            first = await deployments.create_deployment(
                session, admin, service="web", version="v1.0.0"
            )
            await _run_to(session, first, "building", "deploying", "success")
        failed = await deployments.create_deployment(
            session, admin, service="web", version="v2.0.0"
        )
        await _run_to(session, failed, "building", "deploying", "failed")
        return failed


async def test_rollback_row_history_audit_and_lease(db: Database, admin: Principal) -> None:
    failed = await _service_with_history(db, admin, first_fails=False)
    expires = utcnow() + timedelta(seconds=15)
    async with db.session() as session:
        failed = await deployments.get_deployment(session, admin, failed.id)
        rollback = await deployments.record_automatic_rollback(
            session,
            ENGINE,
            failed,
            service_name="web",
            reason="replica not ready",
            lease_owner="host:w1",
            lease_expires_at=expires,
        )
        assert rollback is not None
        rollback_id = rollback.id
    async with db.session(write=False) as session:
        row = await session.get(Deployment, rollback_id)
        assert row is not None
        assert (row.status, row.event_type, row.triggered_by, row.operator) == (
            "pending",
            "rollback",
            "automated",
            "engine",
        )
        assert row.version == "v1.0.0" and row.rollback_from == failed.id
        assert row.previous_artifact_id == failed.artifact_id
        assert row.owner_id == failed.owner_id
        assert row.lease_owner == "host:w1" and row.lease_expires_at is not None
        history = (
            await session.scalars(
                sa.select(StatusHistory).where(StatusHistory.entity_id == rollback_id)
            )
        ).all()
        assert [(h.from_status, h.to_status, h.reason, h.actor) for h in history] == [
            (None, "pending", "automatic rollback: replica not ready", "engine")
        ]
        assert history[0].changed_by is None  # the engine is no user
        created = (
            await session.scalars(
                sa.select(AuditEntry).where(
                    AuditEntry.entity_id == str(rollback_id), AuditEntry.action == "create"
                )
            )
        ).all()
        assert [(a.actor, a.actor_id, a.changes) for a in created] == [
            ("engine", None, {"service": "web", "version": "v1.0.0", "event_type": "rollback"})
        ]


@pytest.mark.parametrize("case", ["first_deployment", "rollback_fails", "artifact_deleted"])
async def test_nothing_to_go_back_to(db: Database, admin: Principal, case: str) -> None:
    failed = await _service_with_history(db, admin, first_fails=case == "first_deployment")
    async with db.session() as session:
        failed = await deployments.get_deployment(session, admin, failed.id)
        if case == "rollback_fails":
            failed.event_type = "rollback"
        if case == "artifact_deleted":
            assert failed.previous_artifact_id is not None
            previous = await artifacts.get_artifact(session, admin, failed.previous_artifact_id)
            previous.deleted_at = utcnow()
        rollback = await deployments.record_automatic_rollback(
            session,
            ENGINE,
            failed,
            service_name="web",
            reason="boom",
            lease_owner="host:w1",
            lease_expires_at=utcnow(),
        )
        assert rollback is None
        count = await session.scalar(sa.select(sa.func.count()).select_from(Deployment))
        assert count == (1 if case == "first_deployment" else 2)
