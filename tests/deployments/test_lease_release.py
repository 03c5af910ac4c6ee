"""A deployment that ends (success, failed, rolled back) holds no lease: before, the engine's
`lease_owner=None` was skipped by transition() and finished rows kept naming their worker."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pilothouse.access import Principal, system_actor
from pilothouse.artifacts import service as artifacts
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import Deployment
from pilothouse.environments import service as environments
from pilothouse.services import service as services

ENGINE = system_actor("engine")


@pytest.mark.parametrize("path", [("success",), ("failed",), ("success", "rolled_back")])
async def test_an_ended_deployment_holds_no_lease(
    db: Database, admin: Principal, path: tuple[str, ...]
) -> None:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="prod")
        await services.create_service(session, admin, environment="prod", name="web", resources={})
        await artifacts.register_artifact(
            session, admin, service="web", version="v1.0.0", commit_sha="c" * 40
        )
        dep = await deployments.create_deployment(session, admin, service="web", version="v1.0.0")
        dep.lease_owner, dep.lease_expires_at = "host:1:w", utcnow() + timedelta(seconds=15)
        for to in ("building", "deploying"):
            await deployments.transition(session, dep, to, actor=ENGINE)
        assert dep.lease_owner == "host:1:w", "a running deployment keeps its lease"
        for to in path:
            await deployments.transition(session, dep, to, actor=ENGINE)
        dep_id = dep.id
    async with db.session(write=False) as session:
        row = await session.get(Deployment, dep_id)
        assert row is not None
        assert (row.lease_owner, row.lease_expires_at) == (None, None)
