"""The findings API end to end on one app: import (raw body), list, show, triage with audit,
summaries, SARIF export, and the deployment gate carried out by the real release engine."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pilothouse.core.db import Database
from pilothouse.deployments.engine import Engine
from pilothouse.deployments.models import Deployment
from pilothouse.findings import formats, gate
from tests.conftest import Api, one_store
from tests.findings.support import result, sarif


def _import(api: Api, body: dict[str, Any], **params: str) -> Any:
    response = api.client.post(
        "/api/v1/scans/import",
        content=json.dumps(body).encode(),
        params={"environment": "prod", "service": "web", **params},
        headers={**api._headers(), "content-type": "application/json"},
    )
    return response


REPORT = sarif(
    [
        result("sqli", "db.py", 4, "cur.execute(q % x)", properties={"security-severity": "9.8"}),
        result("weak-hash", "auth.py", 9, "md5(p)", level="warning"),
    ],
    tool="codeql",
)


def test_import_list_triage_summary_export(api: Api, world: dict[str, Any]) -> None:
    scan = api.ok(_import(api, REPORT, artifact="v1.0.0"), 201)
    assert scan["status"] == "completed" and scan["type"] == "sast"
    assert scan["environment"] == "prod" and scan["artifact"] == "v1.0.0"
    summary = scan["summary"]
    assert (
        summary["total_findings"],
        summary["critical_findings"],
        summary["medium_findings"],
    ) == (2, 1, 1)
    assert summary["compliance_score"] == 72.0  # 100 - 25 - 3

    crit = api.ok(api.get("/findings", params={"severity": "critical", "environment": "prod"}))
    assert [f["rule_id"] for f in crit] == ["sqli"]
    assert crit[0]["location"] == "db.py:4" and crit[0]["scans_seen"] == 1
    assert api.ok(api.get("/findings", params={"artifact": "v1.1.0"})) == []

    fid = crit[0]["id"]
    # accepting needs a reason and an expiry; both are audited
    refused = api.post(f"/findings/{fid[:8]}/accept", {"reason": "mitigated by WAF"})
    assert refused.status_code == 422 and "until" in refused.text
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    accepted = api.ok(
        api.post(f"/findings/{fid[:8]}/accept", {"reason": "mitigated by WAF", "until": until})
    )
    assert accepted["status"] == "accepted_risk" and accepted["triaged_by"] == "admin"
    bad = api.post(f"/findings/{fid}/false-positive", {})
    assert bad.status_code == 422
    trail = api.ok(api.get("/audit", params={"entity_type": "security_finding"}))
    assert trail[0]["action"] == "finding.accept"
    assert trail[0]["changes"]["reason"] == "mitigated by WAF"
    reopened = api.ok(api.post(f"/findings/{fid}/reopen", {}))
    assert reopened["status"] == "open"

    env = api.ok(api.get("/findings/summary", params={"environment": "prod"}))
    assert (env["open_findings"], env["critical_findings"], env["compliance_score"]) == (2, 1, 72.0)

    exported = api.ok(api.get("/findings/export", params={"environment": "prod"}))
    back = list(formats.read(io.BytesIO(json.dumps(exported).encode())))  # valid SARIF
    assert sorted((r.rule_id, r.severity) for r in back) == [
        ("sqli", "critical"),
        ("weak-hash", "medium"),
    ]
    shown = api.ok(api.get(f"/findings/{fid}"))
    assert shown["scans"] == [scan["id"]]

    invalid = _import(api, {"version": "2.1.0", "runs": [{"results": []}]})
    assert invalid.status_code == 422 and "schema" in invalid.text
    viewer = api.as_(api.user("v", "viewer"))
    assert _import(viewer, REPORT).status_code in (403, 404)
    assert api.ok(viewer.get("/findings")) == []  # not granted prod: nothing to see
    assert viewer.get(f"/findings/{fid}").status_code == 404


def test_gate_fails_production_deployment_at_pending_and_override(
    api: Api, world: dict[str, Any], db_url: str, tmp_path: Path
) -> None:
    api.ok(_import(api, REPORT, artifact="v1.0.0"), 201)
    dep = api.ok(api.post("/deployments", {"service": "web", "version": "v1.0.0"}), 201)

    async def carry_out(dep_id: str) -> str:
        db = Database(db_url)
        try:
            check = gate.check(db, ["critical"], ["production"])
            engine = Engine(db, tmp_path / "data", pre_start_checks=[check])
            assert await engine.claim(uuid.UUID(dep_id))
            return await engine.run(uuid.UUID(dep_id))
        finally:
            await db.dispose()

    assert asyncio.run(carry_out(dep["id"])) == "failed"
    failed = api.ok(api.get(f"/deployments/{dep['id']}"))
    assert "security gate" in failed["error_message"] and "sqli" in failed["error_message"]
    history = api.ok(api.get(f"/history/deployment/{dep['id']}"))
    assert [h["to_status"] for h in history] == ["pending", "failed"]
    logs = api.ok(api.get(f"/deployments/{dep['id']}/logs"))["items"]
    assert any("blocking finding" in line["message"] and "sqli" in line["message"] for line in logs)

    operator = api.as_(api.user("op", "operator"))
    body = {"service": "web", "version": "v1.0.0", "reason": "hotfix, WAF rule in place"}
    assert operator.post("/gate-overrides", body).status_code == 403
    api.ok(api.post("/gate-overrides", body), 201)
    again = api.ok(api.post("/deployments", {"service": "web", "version": "v1.0.0"}), 201)

    async def verdict(dep_id: str) -> tuple[str, list[str]] | None:
        db = Database(db_url)
        try:
            async with db.session() as session:
                dep = await session.get(Deployment, uuid.UUID(dep_id))
            assert dep is not None
            return await gate.check(db, ["critical"], ["production"])(dep)
        finally:
            await db.dispose()

    assert asyncio.run(verdict(again["id"])) is None  # the override is used up by this one
    assert asyncio.run(verdict(again["id"])) is not None
    logs = api.ok(api.get(f"/deployments/{again['id']}/logs"))["items"]
    assert any("security gate overridden by admin" in line["message"] for line in logs)
    trail = api.ok(api.get("/audit"))
    actions = [e["action"] for e in trail]
    assert "security_gate.override" in actions and "security_gate.override_used" in actions


@one_store
def test_an_offset_past_a_store_integer_is_a_422_naming_it(api: Api) -> None:
    # Found by the schema fuzzer: 8423309277954697068544 reached SQLite and answered 500.
    got = api.get("/findings", params={"offset": 8423309277954697068544})
    assert got.status_code == 422, got.text
    assert got.json()["detail"][0]["field"] == "offset"
    assert api.get("/findings", params={"offset": 2**31 - 1}).status_code == 200
