"""Seed 001: artifacts unused for 30 days that are not a rollback target are pruned by the
registered `artifacts.prune` loop, with a controlled clock: record kept and marked, files
removed, audited; the live release and what a rollback could return to are kept."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pilothouse.artifacts import pruning
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.replicas.models import Replica
from tests.conftest import SHA, Api
from tests.retention_support import run_registered

LIVE = ("building", "deploying", "success")


def _move(api: Api, dep: dict[str, Any], *steps: str) -> dict[str, Any]:
    for step in steps:
        dep = api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))
    return dep


def _deploy(api: Api, version: str, *steps: str, **extra: Any) -> dict[str, Any]:
    dep = api.ok(api.post("/deployments", {"service": "web", "version": version, **extra}), 201)
    return _move(api, dep, *steps)


def _replica(settings: Settings, service_id: str, artifact_id: str, status: str, log: Path) -> None:
    async def go() -> None:
        db = Database(settings.database_url)
        try:
            async with db.session() as session:
                session.add(
                    Replica(
                        service_id=uuid.UUID(service_id),
                        artifact_id=uuid.UUID(artifact_id),
                        status=status,
                        keep_running=status == "running",
                        log_path=str(log),
                    )
                )
        finally:
            await db.dispose()

    asyncio.run(go())


def test_prune_keeps_rollback_targets_and_removes_the_rest(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api.ok(api.post("/environments", {"name": "prod", "type": "production"}), 201)
    svc = api.ok(
        api.post("/services", {"environment": "prod", "name": "web", "command": "x {port}"}), 201
    )
    arts = {
        version: api.ok(
            api.post("/artifacts", {"service": "web", "version": version, "commit_sha": SHA}), 201
        )
        for version in (
            "v1.0.0",
            "v2.0.0",
            "v3.0.0-broken",
            "v4.0.0-never",
            "v5.0.0-rolled",
            "v6.0.0-under-way",
        )
    }
    # v1, v2 live in turn; v5 live, then rolled back by hand to v2 (v5 leaves the stack);
    # v3 fails and is rolled back automatically; v4 is never deployed.
    _deploy(api, "v1.0.0", *LIVE)
    _deploy(api, "v2.0.0", *LIVE)
    v5 = _deploy(api, "v5.0.0-rolled", *LIVE)
    _deploy(api, "v2.0.0", *LIVE, event_type="rollback", rollback_from=v5["id"])
    broken = _deploy(api, "v3.0.0-broken", "building", "deploying", "failed")
    _deploy(api, "v2.0.0", *LIVE, event_type="rollback", rollback_from=broken["id"])
    _move(api, broken, "rolled_back")

    logs = settings.data_dir / "replicas" / "web"
    logs.mkdir(parents=True)
    files = {}
    for version, status in (("v3.0.0-broken", "failed"), ("v5.0.0-rolled", "stopped")):
        files[version] = logs / f"{version}.log"
        files[version].write_text("old output\n")
        _replica(settings, svc["id"], arts[version]["id"], status, files[version])
    running = logs / "live.log"
    running.write_text("live output\n")
    _replica(settings, svc["id"], arts["v2.0.0"]["id"], "running", running)
    outside = tmp_path / "elsewhere.log"  # never removed: not under the data directory
    outside.write_text("x\n")
    _replica(settings, svc["id"], arts["v5.0.0-rolled"]["id"], "stopped", outside)

    def prune_at(days: int) -> None:
        run_registered(
            settings,
            "artifacts.prune",
            at=utcnow() + timedelta(days=days),
            clock_in=pruning,
            monkeypatch=monkeypatch,
        )

    def pruned() -> dict[str, bool]:
        return {a["version"]: a["pruned_at"] is not None for a in api.ok(api.get("/artifacts"))}

    prune_at(29)
    assert not any(pruned().values())

    under_way = _deploy(api, "v6.0.0-under-way")  # pending: what it rolls out is kept
    prune_at(31)
    _move(api, under_way, "failed")
    assert pruned() == {
        "v1.0.0": False,  # a rollback from v2 returns to v1
        "v2.0.0": False,  # live
        "v3.0.0-broken": True,  # never went live
        "v4.0.0-never": True,  # never deployed
        "v5.0.0-rolled": True,  # rolled back: no rollback returns to it
        "v6.0.0-under-way": False,  # a deployment was rolling it out
    }
    assert not files["v3.0.0-broken"].exists() and not files["v5.0.0-rolled"].exists()
    assert running.exists() and outside.exists()

    entries = api.ok(
        api.get(
            "/audit", params={"entity_type": "artifact", "entity_id": arts["v4.0.0-never"]["id"]}
        )
    )
    assert entries[0]["action"] == "prune" and "rollback target" in entries[0]["changes"]["reason"]

    # the record stays; deploying it again is refused with the reason, rollback still works
    refused = api.post("/deployments", {"service": "web", "version": "v4.0.0-never"})
    assert refused.status_code == 409, refused.text
    assert "was pruned" in refused.json()["message"]
    refused = api.post("/services/web/rollback", {"to": "v5.0.0-rolled"})
    assert refused.status_code == 409 and "was pruned" in refused.json()["message"]
    back = api.ok(api.post("/services/web/rollback", {}), 201)
    assert back["version"] == "v1.0.0"

    prune_at(32)  # v6 is no longer under way and never went live
    assert sum(pruned().values()) == 4 and pruned()["v6.0.0-under-way"]
