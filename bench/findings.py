"""Findings benchmark: import of a generated SARIF file with 100,000 results, then its reimport,
on SQLite and PostgreSQL, next to `sarif-tools`' own summary of the same file in the same run.

    .venv/bin/python bench/findings.py                 # 100,000 results, both databases
    .venv/bin/python bench/findings.py --results 20000 --db sqlite

The file has 60 rules, results spread over 5,000 files, each with a location, a snippet and a
message (about 50 MB). Each import runs in a fresh child process (`--child`), so its peak RSS
(from wait4) is the import's own: the app's modules, the scope's index and one batch. The
baseline `sarif summary FILE` (sarif-tools, which loads the file whole) is timed and measured
the same way. The reimport of the same file must rewrite no finding (`rewritten` = 0); it only
adds one sighting per finding (same bytes as the scope's last scan: findings/same_report.py).
A third import, of the same results with every 100th left out, takes the full dedup path
(every result parsed, validated, fingerprinted and matched; 1,000 findings resolved).
Figures: the import's own time, the child process's wall time, its CPU time (user + system:
the figure that does not depend on how loaded the machine is), its peak RSS. Prints figures
and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("PILOTHOUSE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RULES = 60
FILES = 5000


def generate(path: Path, results: int, seed: int = 17, drop_every: int = 0) -> int:
    """Write the SARIF file result by result (never whole in memory); returns its size. With
    `drop_every`, every n-th result is left out (a scan after some fixes)."""
    rng = random.Random(seed)
    levels = ["error", "warning", "note"]
    rules = [
        {
            "id": f"R{i:03d}",
            "name": f"rule-{i}",
            "shortDescription": {"text": f"Rule {i}: something unsafe"},
            "help": {"text": f"Fix rule {i} by doing the safe thing."},
            "properties": {
                "security-severity": f"{rng.uniform(1, 10):.1f}",
                "tags": ["security", f"external/cwe/cwe-{rng.randint(20, 900)}"],
            },
        }
        for i in range(RULES)
    ]
    with path.open("w") as out:
        head = {
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
        }
        out.write(json.dumps(head)[:-1])
        out.write(', "runs": [{"tool": {"driver": {"name": "benchscan", "rules": ')
        out.write(json.dumps(rules))
        out.write('}}, "results": [')
        start = out.tell()
        for n in range(results):
            rule = n % RULES
            line = rng.randint(1, 2000)
            result = {
                "ruleId": f"R{rule:03d}",
                "ruleIndex": rule,
                "level": levels[n % 3],
                "message": {
                    "text": f"Finding {n}: tainted data reaches a sink in handler {n % 97}."
                },
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": f"src/pkg{n % 50}/module{n % FILES}.py"},
                            "region": {
                                "startLine": line,
                                "snippet": {"text": f"    value_{n} = sink(request.args['{n}'])"},
                            },
                        }
                    }
                ],
            }
            if drop_every and n % drop_every == 0:
                continue
            out.write(("," if out.tell() > start else "") + json.dumps(result))
        out.write("]}]}")
    return path.stat().st_size


# -- the child: one import ----------------------------------------------------------------------


async def child_import(url: str, report: Path) -> dict[str, Any]:
    from pilothouse.access import Principal
    from pilothouse.core.db import Database
    from pilothouse.findings import ingest
    from pilothouse.users.models import User

    db = Database(url)
    try:
        async with db.session() as session:
            user = await session.scalar(sa.select(User).where(User.name == "admin"))
            assert user is not None
            admin = Principal(id=user.id, name=user.name, role="admin")
            started = time.monotonic()
            where = await ingest.resolve_target(
                session, admin, environment="prod", service="api", artifact="v1.0.0", target=None
            )
            scan = await ingest.create_scan(
                session, admin, where, scan_type="sast", source="import", status="running"
            )
            await ingest.import_report(session, admin, scan, report)
        seconds = time.monotonic() - started  # the commit included
        return {"seconds": seconds, "changes": scan.changes, "summary": scan.summary}
    finally:
        await db.dispose()


async def setup(url: str) -> None:
    from pilothouse import migrations
    from pilothouse.access import Principal
    from pilothouse.artifacts import service as artifacts
    from pilothouse.core.db import Database
    from pilothouse.environments import service as environments
    from pilothouse.services import service as services
    from pilothouse.users import service as users

    await asyncio.to_thread(migrations.upgrade, url)
    db = Database(url)
    try:
        async with db.session() as session:
            user, _ = await users.bootstrap_admin(session, "admin")
            admin = Principal(id=user.id, name=user.name, role="admin")
            await environments.create_environment(session, admin, name="prod", type="production")
            await services.create_service(
                session, admin, environment="prod", name="api", command="run {port}", resources={}
            )
            await artifacts.register_artifact(
                session, admin, service="api", version="v1.0.0", commit_sha="a" * 40
            )
    finally:
        await db.dispose()


def measured(argv: list[str]) -> tuple[float, float, str, float]:
    """Run a child; (wall seconds, peak RSS in MB, stdout, CPU seconds: user + system)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout = proc.stdout.read() if proc.stdout else b""
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):  # sarif-tools exits 1 when it finds errors
        raise RuntimeError(f"{argv[:3]} failed: {stderr.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, stdout.decode(), usage.ru_utime + usage.ru_stime


def run_store(name: str, url: str, report: Path, fixed: Path) -> dict[str, Any]:
    asyncio.run(setup(url))
    rows: dict[str, Any] = {"db": name}
    for label, path in (("import", report), ("reimport", report), ("fixed", fixed)):
        child = [sys.executable, __file__, "--child", url, str(path)]
        wall, rss, out, cpu = measured(child)
        rows[f"{label} cpu s"] = round(cpu, 2)
        figures = json.loads(out.strip().splitlines()[-1])
        rows[f"{label} s"] = round(figures["seconds"], 2)
        rows[f"{label} process s"] = round(wall, 2)
        rows[f"{label} peak MB"] = round(rss, 1)
        rows[f"{label} changes"] = figures["changes"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=int, default=100_000, help="results in the SARIF file")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, report = args.child
        print(json.dumps(asyncio.run(child_import(url, Path(report))), default=str))
        return
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "bench.sarif"
        size = generate(report, args.results)
        print(f"SARIF file: {args.results:,} results, {size / 1e6:.1f} MB")
        fixed = Path(tmp) / "fixed.sarif"
        generate(fixed, args.results, drop_every=100)
        sarif_cli = shutil.which("sarif") or str(Path(sys.executable).with_name("sarif"))
        base_wall, base_rss, _, base_cpu = measured([sarif_cli, "summary", str(report)])
        print(
            f"baseline `sarif summary` (sarif-tools): {base_wall:.2f} s (cpu {base_cpu:.2f} s), "
            f"peak {base_rss:.0f} MB; load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} cores"
        )
        results = []
        if args.db in ("sqlite", "both"):
            results.append(run_store("sqlite", f"sqlite:///{tmp}/bench.db", report, fixed))
        if args.db in ("postgres", "both"):
            name = f"pilothouse_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
            try:
                results.append(run_store("postgres", url, report, fixed))
            finally:
                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for row in results:
        print(
            f"{row['db']}: import {row['import s']} s (process {row['import process s']} s, "
            f"cpu {row['import cpu s']} s, peak {row['import peak MB']} MB), reimport "
            f"{row['reimport s']} s (process {row['reimport process s']} s, cpu "
            f"{row['reimport cpu s']} s, peak {row['reimport peak MB']} MB)"
        )
        print(
            f"  then a scan with 1% fixed (full dedup path): {row['fixed s']} s (process "
            f"{row['fixed process s']} s, cpu {row['fixed cpu s']} s, "
            f"peak {row['fixed peak MB']} MB)"
            f"\n  its changes: {row['fixed changes']}"
        )
        print(f"  import changes: {row['import changes']}")
        print(f"  reimport changes: {row['reimport changes']}")
        print(
            f"  vs sarif summary: import {row['import process s'] / base_wall:.1f}x its time, "
            f"{row['import peak MB'] / base_rss:.2f}x its memory; "
            f"reimport {row['reimport process s'] / base_wall:.1f}x its time"
        )


if __name__ == "__main__":
    main()
