"""SLA breach alerts are claimed once per finding across workers; accepted risks expire; the
schedule records due scans; scanner command lines are exact lists."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from pilothouse.access import Principal
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.findings import jobs, scanners
from pilothouse.findings import service as findings
from pilothouse.findings.cli import _until
from pilothouse.findings.models import ScanSchedule, SecurityFinding, SecurityScan
from pilothouse.services.models import Service
from tests.findings.support import result, run_import, sarif, world, write


async def test_breach_alerted_once_and_acceptance_expires(
    db: Database, admin: Principal, tmp_path: Path
) -> None:
    await world(db, admin)
    report = sarif(
        [
            result("crit", "a.py", 1, "x()", properties={"security-severity": "9.5"}),
            result("low", "b.py", 1, "y()", level="note"),
        ]
    )
    await run_import(db, admin, write(tmp_path, "r.json", report))
    async with db.session(write=False) as session:
        rows = {f.rule_id: f for f in await session.scalars(sa.select(SecurityFinding))}
    crit, low = rows["crit"], rows["low"]
    assert crit.sla_due_at - crit.first_seen_at == timedelta(days=7)
    assert low.sla_due_at - low.first_seen_at == timedelta(days=180)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    later = utcnow() + timedelta(days=8)
    # two workers at once: the finding is alerted by exactly one of them, once
    counts = await asyncio.gather(
        jobs.sla_breaches(db, later, send), jobs.sla_breaches(db, later, send)
    )
    assert sorted(counts) == [0, 1] and len(sent) == 1
    assert sent[0]["event"] == "finding_sla_breached" and "crit" in sent[0]["text"]
    assert sent[0]["findings"][0]["id"] == str(crit.id)
    assert await jobs.sla_breaches(db, later, send) == 0

    async with db.session() as session:
        await findings.triage(
            session,
            admin,
            str(low.id),
            "accept",
            reason="legacy",
            until=utcnow() + timedelta(days=1),
        )
    assert await jobs.expire(db, utcnow()) == 0
    assert await jobs.expire(db, utcnow() + timedelta(days=2)) == 1
    async with db.session(write=False) as session:
        again = await session.get(SecurityFinding, low.id)
        assert again is not None and again.status == "open" and again.accepted_until is None


async def test_due_schedules_record_pending_scans(db: Database, admin: Principal) -> None:
    await world(db, admin)
    async with db.session() as session:
        svc = await session.scalar(sa.select(Service))
        assert svc is not None
        svc.driver_config = {"cwd": "/srv/api"}
        session.add(
            ScanSchedule(
                owner_id=admin.id,
                environment_id=svc.environment_id,
                service_id=svc.id,
                type="dependency",
                cron="0 * * * *",
                created_at=utcnow() - timedelta(hours=2),
            )
        )
    created = await jobs.due_schedules(db, utcnow())
    assert len(created) == 1
    assert await jobs.due_schedules(db, utcnow()) == []  # not due again within the hour
    async with db.session(write=False) as session:
        scan = await session.get(SecurityScan, created[0])
        assert scan is not None
        assert (scan.status, scan.source, scan.source_path) == (
            "pending",
            "schedule",
            "/srv/api/requirements.txt",
        )


def test_scanner_commands_and_until() -> None:
    out = Path("/tmp/o.json")
    assert scanners.command("sast", "/src", out, python="py") == [
        "py", "-m", "bandit", "-r", "/src", "-f", "json", "-o", "/tmp/o.json", "-q"
    ]  # fmt: skip
    assert scanners.command("dependency", "/r.txt", out)[:3] == [sys.executable, "-m", "pip_audit"]
    assert "--no-deps" in scanners.command("dependency", "/r.txt", out)
    assert _until("30d") > _until("2d")
    assert _until("2030-01-02").startswith("2030-01-02T00:00:00+00:00")


@pytest.mark.parametrize(
    "bad",
    [
        {"findings_sla_days": {"urgent": 1}},
        {"findings_sla_days": {"low": 0}},
        {"findings_gate_severities": ["severe"]},
        {"findings_gate_environment_types": ["prod"]},
    ],
)
def test_findings_settings_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)
    assert Settings(findings_sla_days={"critical": 3}).findings_sla_days["high"] == 30
