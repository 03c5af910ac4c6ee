"""Done-when of issue 17, through the CLI against a live server: bandit runs (a real subprocess)
on the vulnerable sample project as a scan job, its findings show; one issue is fixed and the
rescan resolves it automatically; a production deployment of the scanned artifact is refused at
pending by the security gate naming the finding, the admin override lets the next one through,
and both are in the audit trail."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from pilothouse.config import Settings
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.deployments.engine import Engine
from pilothouse.deployments.models import Deployment
from pilothouse.findings import gate, jobs
from pilothouse.findings.rules import DEFAULT_SLA_DAYS
from tests.conftest import LiveServer, one_store
from tests.findings.support import SHA, result, sarif
from tests.test_cli import Cli

UNTIL = (datetime.now(UTC) + timedelta(days=10)).isoformat()
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vulnerable"


async def _run_job(url: str, scan_id: str) -> str:
    db = Database(url)
    try:
        return await jobs.run_scan(
            db, Leases(db), uuid.UUID(scan_id), timeout=120, sla_days=DEFAULT_SLA_DAYS
        )
    finally:
        await db.dispose()


async def _deploy(url: str, data: Path, dep_id: str) -> str:
    db = Database(url)
    try:
        engine = Engine(db, data, pre_start_checks=[gate.check(db, ["critical"], ["production"])])
        assert await engine.claim(uuid.UUID(dep_id))
        return await engine.run(uuid.UUID(dep_id))
    finally:
        await db.dispose()


async def _gate(url: str, dep_id: str) -> tuple[str, list[str]] | None:
    db = Database(url)
    try:
        async with db.session() as session:
            dep = await session.get(Deployment, uuid.UUID(dep_id))
        assert dep is not None
        return await gate.check(db, ["critical"], ["production"])(dep)
    finally:
        await db.dispose()


@one_store
def test_bandit_scan_fix_rescan_gate_override(
    live_server: LiveServer, admin_token: str, settings: Settings, tmp_path: Path
) -> None:
    url = settings.effective_database_url()
    source = tmp_path / "src"
    shutil.copytree(SAMPLE, source)
    cli = Cli(live_server.url, admin_token, tmp_path)
    http = httpx.Client(
        base_url=f"{live_server.url}/api/v1",
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=60,
    )

    def call(method: str, path: str, body: Any = None) -> Any:
        response = http.request(method, path, json=body)
        assert response.is_success, response.text
        return response.json()

    call("POST", "/environments", {"name": "prod", "type": "production"})
    call("POST", "/services", {"environment": "prod", "name": "api", "command": "run {port}"})
    call("POST", "/artifacts", {"service": "api", "version": "v1.0.0", "commit_sha": SHA})

    first = cli.json(
        "scan", "run", "--type", "sast", "--service", "api", "--artifact", "v1.0.0",
        "--path", str(source), "--no-wait",
    )  # fmt: skip
    assert first["status"] == "pending"
    assert asyncio.run(_run_job(url, first["id"])) == "completed"
    shown = call("GET", f"/scans/{first['id'][:8]}")
    assert shown["tool"] == "bandit" and shown["summary"]["total_findings"] >= 6
    found = cli.json("findings", "list", "--env", "prod", "--artifact", "v1.0.0")
    rules = {f["rule_id"] for f in found}
    assert {"B602", "B307", "B301", "B506"} <= rules
    b602 = next(f for f in found if f["rule_id"] == "B602")
    assert b602["severity"] == "critical" and b602["location"] == "app.py:17"
    assert b602["cwe_id"] == "CWE-78" and b602["remediation"].startswith("https://")

    # fix the eval, rescan: that finding is resolved by the second scan, the others kept
    app = source / "app.py"
    app.write_text(app.read_text().replace("return eval(expression)", "return int(expression)"))
    second = call(
        "POST",
        "/scans/run",
        {"type": "sast", "service": "api", "artifact": "v1.0.0", "path": str(source)},
    )
    assert asyncio.run(_run_job(url, second["id"])) == "completed"
    after = {f["rule_id"]: f for f in call("GET", "/findings?environment=prod")}
    assert after["B307"]["status"] == "resolved"
    assert after["B307"]["resolved_by_scan_id"] == second["id"]
    assert after["B602"]["status"] == "open" and after["B602"]["scans_seen"] == 2
    assert after["B602"]["id"] == b602["id"]

    # the gate: refused at pending with the critical findings named
    dep = call("POST", "/deployments", {"service": "api", "version": "v1.0.0"})
    assert asyncio.run(_deploy(url, tmp_path / "data", dep["id"])) == "failed"
    refused = call("GET", f"/deployments/{dep['id']}")
    assert "security gate" in refused["error_message"] and "B602" in refused["error_message"]
    logs = " ".join(
        line["message"] for line in call("GET", f"/deployments/{dep['id']}/logs")["items"]
    )
    assert "blocking finding" in logs and "B324" in logs

    cli.run("findings", "override", "--service", "api", "--version", "v1.0.0", "--reason", "hotfix")
    again = call("POST", "/deployments", {"service": "api", "version": "v1.0.0"})
    assert asyncio.run(_gate(url, again["id"])) is None  # let through, once
    logs = " ".join(
        line["message"] for line in call("GET", f"/deployments/{again['id']}/logs")["items"]
    )
    assert "security gate overridden by admin: hotfix" in logs
    trail = [e["action"] for e in call("GET", "/audit")]
    assert "security_gate.override" in trail and "security_gate.override_used" in trail

    # triage, and the export from the CLI
    call("POST", f"/findings/{b602['id'][:8]}/accept", {"reason": "constant", "until": UNTIL})
    assert call("GET", f"/findings/{b602['id']}")["status"] == "accepted_risk"
    out = tmp_path / "open.sarif"
    cli.run("findings", "export", "--env", "prod", "-o", str(out))
    exported = json.loads(out.read_text())
    assert (
        exported["version"] == "2.1.0" and exported["runs"][0]["tool"]["driver"]["name"] == "bandit"
    )

    # a report made elsewhere, imported from the CLI (streamed), found by its version alone
    report = tmp_path / "codeql.sarif"
    crit = result("py/sqli", "db.py", 3, "q % x", properties={"security-severity": "9.8"})
    report.write_text(json.dumps(sarif([crit], tool="CodeQL")))
    line = cli.run("scan", "import", str(report), "--env", "prod", "--artifact", "v1.0.0").stdout
    assert "1 finding(s): 1 critical" in line and "1 new" in line
