"""Small report builders for the findings tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pilothouse.access import Principal
from pilothouse.artifacts import service as artifacts
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.findings import ingest
from pilothouse.findings.models import SecurityScan
from pilothouse.services import service as services

SHA = "b" * 40


def sarif(
    results: list[dict[str, Any]], *, tool: str = "scanner", rules: Any = None
) -> dict[str, Any]:
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": tool, "rules": rules or []}},
                "results": results,
            }
        ],
    }


def result(
    rule: str, path: str, line: int, code: str, *, level: str = "error", **extra: Any
) -> dict[str, Any]:
    return {
        "ruleId": rule,
        "level": level,
        "message": {"text": f"{rule} at {path}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": path},
                    "region": {"startLine": line, "snippet": {"text": code}},
                }
            }
        ],
        **extra,
    }


def write(tmp: Path, name: str, body: dict[str, Any]) -> Path:
    path = tmp / name
    path.write_text(json.dumps(body))
    return path


async def world(db: Database, admin: Principal, env_type: str = "production") -> None:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="prod", type=env_type)
        await services.create_service(
            session, admin, environment="prod", name="api", command="run {port}", resources={}
        )
        for version in ("v1.0.0", "v1.1.0"):
            await artifacts.register_artifact(
                session, admin, service="api", environment="prod", version=version, commit_sha=SHA
            )


async def run_import(
    db: Database,
    admin: Principal,
    report: Path,
    *,
    artifact: str | None = "v1.0.0",
    scan_type: str = "sast",
    complete: bool = True,
) -> SecurityScan:
    async with db.session() as session:
        where = await ingest.resolve_target(
            session, admin, environment="prod", service="api", artifact=artifact, target=None
        )
        scan = await ingest.create_scan(
            session,
            admin,
            where,
            scan_type=scan_type,
            source="import",
            complete=complete,
            status="running",
        )
        return await ingest.import_report(session, admin, scan, report)
