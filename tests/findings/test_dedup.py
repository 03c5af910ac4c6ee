"""Deduplication across scans on both stores: reimport, line shifts, renamed files, two scanners
on the same issue, resolution by a complete scan and reopening (DefectDojo #6598, #12907,
#14012 are the counter-examples)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pilothouse.access import Principal
from pilothouse.core.db import Database
from pilothouse.errors import ValidationFailed
from pilothouse.findings import ingest
from pilothouse.findings.models import SecurityFinding, security_finding_sightings
from tests.conftest import one_store
from tests.findings.support import result, run_import, sarif, world, write


async def _findings(db: Database) -> list[SecurityFinding]:
    async with db.session(write=False) as session:
        rows = await session.scalars(sa.select(SecurityFinding).order_by(SecurityFinding.line))
        return list(rows)


async def test_reimport_shift_rename_resolve_reopen(
    db: Database, admin: Principal, tmp_path: Path
) -> None:
    await world(db, admin)
    first = [
        result("B602", "app.py", 10, "subprocess.call(cmd, shell=True)"),
        result("B307", "app.py", 20, "eval(x)"),
        result("B307", "app.py", 30, "eval(x)"),  # the same window twice: two findings
        result("B105", "conf.py", 3, 'PASSWORD = "x"', level="note"),
    ]
    one = await run_import(db, admin, write(tmp_path, "1.json", sarif(first)))
    assert one.summary is not None and one.summary["total_findings"] == 4
    assert one.changes == {
        "new": 4,
        "unchanged": 0,
        "rewritten": 0,
        "reopened": 0,
        "renamed": 0,
        "resolved": 0,
    }
    ids = {f.line: f.id for f in await _findings(db)}

    # the same report again: the same four findings, nothing rewritten
    two = await run_import(db, admin, write(tmp_path, "2.json", sarif(first)))
    assert two.changes is not None and two.changes["unchanged"] == 4
    assert two.changes["new"] == two.changes["rewritten"] == 0

    # lines shifted by an edit above, conf.py renamed to settings.py: still the same findings
    shifted = [
        result("B602", "app.py", 15, "subprocess.call(cmd,  shell=True)", level="warning"),
        result("B307", "app.py", 25, "eval(x)"),
        result("B307", "app.py", 35, "eval(x)"),
        result("B105", "settings.py", 3, 'PASSWORD = "x"', level="note"),
    ]
    three = await run_import(db, admin, write(tmp_path, "3.json", sarif(shifted)))
    assert three.changes is not None
    assert three.changes["new"] == 0 and three.changes["renamed"] == 1
    now = {f.line: f for f in await _findings(db)}
    assert {now[15].id, now[25].id, now[35].id, now[3].id} == set(ids.values())
    assert now[3].path == "settings.py" and now[3].location == "settings.py:3"
    # a severity the scanner lowered is taken, and the SLA follows it (90 days for medium)
    assert now[15].severity == "medium"
    assert now[15].sla_due_at - now[15].first_seen_at == timedelta(days=90)

    # one eval fixed: resolved by that scan; the others stay open
    fixed = [shifted[0], shifted[1], shifted[3]]
    four = await run_import(db, admin, write(tmp_path, "4.json", sarif(fixed)))
    assert four.changes is not None and four.changes["resolved"] == 1
    by_status = {f.line: (f.status, f.resolved_by_scan_id) for f in await _findings(db)}
    assert by_status[35] == ("resolved", four.id)
    assert by_status[15][0] == by_status[25][0] == "open"

    # it comes back: reopened, the same finding
    five = await run_import(db, admin, write(tmp_path, "5.json", sarif(shifted)))
    assert five.changes is not None and five.changes["reopened"] == 1
    back = next(f for f in await _findings(db) if f.line == 35)
    assert back.status == "open" and back.reopened_count == 1 and back.resolved_at is None
    async with db.session(write=False) as session:
        sightings = await session.scalar(
            sa.select(sa.func.count()).where(security_finding_sightings.c.finding_id == back.id)
        )
    assert sightings == 4  # scans 1, 2, 3, 5


async def test_two_scanners_and_partial_scans_do_not_close_each_other(
    db: Database, admin: Principal, tmp_path: Path
) -> None:
    await world(db, admin)
    issue = [result("sql-injection", "db.py", 7, "cur.execute(q % x)")]
    await run_import(db, admin, write(tmp_path, "a.json", sarif(issue, tool="semgrep")))
    await run_import(db, admin, write(tmp_path, "b.json", sarif(issue, tool="codeql")))
    assert len(await _findings(db)) == 2  # one per scanner, each in its own scope
    # codeql's next complete scan reports nothing: only codeql's finding is resolved
    await run_import(db, admin, write(tmp_path, "c.json", sarif([], tool="codeql")))
    statuses = sorted(f.status for f in await _findings(db))
    assert statuses == ["open", "resolved"]
    # a partial semgrep scan that misses it resolves nothing
    partial = await run_import(
        db, admin, write(tmp_path, "d.json", sarif([], tool="semgrep")), complete=False
    )
    assert partial.changes is not None and partial.changes["resolved"] == 0


@one_store
async def test_results_validated_in_a_second_process_fail_the_whole_import(
    db: Database, admin: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large files are validated by a second process while this one imports: an invalid result
    near the end still fails the import, and nothing of it is kept."""
    await world(db, admin)
    monkeypatch.setattr(ingest, "PARALLEL_CHECK_BYTES", 0)  # every file counts as large
    good = [result("R1", f"m{i}.py", 1, f"call({i})") for i in range(50)]
    scan = await run_import(db, admin, write(tmp_path, "ok.json", sarif(good)))
    assert scan.summary is not None and scan.summary["total_findings"] == 50
    bad = [*good, result("R1", "z.py", 1, "x", level="fatal")]
    with pytest.raises(ValidationFailed, match=r"results\[50\].*level"):
        await run_import(db, admin, write(tmp_path, "bad.json", sarif(bad)))
    async with db.session(write=False) as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(SecurityFinding)) == 50
        assert (
            await session.scalar(sa.select(sa.func.count()).select_from(security_finding_sightings))
            == 50
        )
