"""Configuration as code benchmark: plan and apply a pilothouse.yaml with 500 services.

    ./dev bench apply          (or .venv/bin/python bench/apply.py [--services 500])

For SQLite (temp dir) and PostgreSQL (a throwaway database on PILOTHOUSE_TEST_PG_URL), through
the functions the API routes call (`apply.service.plan_document` / `apply_document`, one
transaction each, as a request has), with a file of 5 environments x 100 services, each with
resources, driver settings and a health check, plus requirements and alert rules:
  1. validate the file (YAML with positions + the models): no store;
  2. plan against an empty store (everything to create), apply it;
  3. plan the same file against the live state (no changes): median of 5. Target < 2 s;
  4. apply it again: no changes, 0 writes (counted);
  5. plan with 50 services edited.
Baseline, in the same run: listing the 500 live services through `services.list_services`
(what reading the state alone costs). Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event

from pilothouse import migrations
from pilothouse.access import Principal
from pilothouse.apply import service
from pilothouse.apply.load import load
from pilothouse.core.crypto import load_keyring
from pilothouse.core.db import Database
from pilothouse.services import service as services
from pilothouse.setup import ensure_master_key
from pilothouse.users import service as users

PG_ADMIN_URL = os.environ.get("PILOTHOUSE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENVIRONMENTS = 5


def document(count: int, edited: int = 0) -> str:
    lines = ["version: 1", "environments:"]
    per_env = max(1, count // ENVIRONMENTS)
    n = 0
    for e in range(ENVIRONMENTS):
        lines += [
            f"  env{e}:",
            "    type: staging",
            "    limits: {max_deployment_frequency: 20}",
            "    requirements:",
            "      DATABASE_URL: {rule: postgres_dsn}",
            "      LOG_LEVEL: {rule: one_of, args: {values: [DEBUG, INFO]}}",
            "    services:",
        ]
        for s in range(per_env):
            replicas = 3 if n < edited else 2
            lines += [
                f"      svc{s:03d}:",
                f"        command: python3 app.py --port {{port}} --name svc{s}",
                f"        target_replicas: {replicas}",
                "        resources: {cpu_cores: 1, memory_mb: 1024}",
                "        driver_config: {max_surge: 1, drain_seconds: 2}",
                "        health_check:",
                "          {path: /health, timeout: 20, thresholds: {response_ms: 300}}",
            ]
            n += 1
        lines += [
            "    alert_rules:",
            "      slow:",
            "        service: svc000",
            "        metric: http_request_duration_seconds",
            "        expression: p95",
            "        warning: 0.5",
        ]
    return "\n".join(lines) + "\n"


async def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await fn()
    return time.perf_counter() - started, result


async def measure(url: str, count: int, data_dir: Path) -> dict[str, float]:
    migrations.upgrade(url)
    ensure_master_key(data_dir / "master.key")
    ring = load_keyring(None, data_dir / "master.key")
    db = Database(url)
    async with db.session() as session:
        user, _ = await users.bootstrap_admin(session, "bench")
    admin = Principal(id=user.id, name=user.name, role="admin")
    text = document(count)
    out: dict[str, float] = {}

    started = time.perf_counter()
    load(text)
    out["validate_s"] = time.perf_counter() - started

    async def plan(doc: str = text) -> service.Planned:
        async with db.session() as session:
            return await service.plan_document(session, admin, ring, doc)

    async def apply(doc: str = text) -> service.Planned:
        async with db.session() as session:
            return await service.apply_document(session, admin, ring, doc)

    out["plan_empty_s"], planned = await timed(plan)
    out["changes"] = len(planned.plan.changes)
    out["apply_s"], _ = await timed(apply)

    samples = [(await timed(plan))[0] for _ in range(5)]
    out["plan_same_s"] = statistics.median(samples)

    writes: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append(statement)

    event.listen(db.write_engine.sync_engine, "before_cursor_execute", seen)
    out["reapply_s"], again = await timed(apply)
    event.remove(db.write_engine.sync_engine, "before_cursor_execute", seen)
    out["reapply_changes"] = len(again.plan.changes)
    out["reapply_writes"] = len(writes)

    out["plan_edit_s"], edited = await timed(lambda: plan(document(count, edited=50)))
    out["edit_changes"] = len(edited.plan.changes)

    async def list_all() -> int:
        async with db.session(write=False) as session:
            return len(await services.list_services(session, admin))

    base = [(await timed(list_all))[0] for _ in range(5)]
    out["list_s"] = statistics.median(base)
    await db.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = asyncio.run(
            measure(f"sqlite:///{tmp}/bench.db", args.services, Path(tmp))
        )
    name = f"ph_bench_apply_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
        with tempfile.TemporaryDirectory() as tmp:
            results["postgres"] = asyncio.run(measure(url, args.services, Path(tmp)))
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{args.services} services in {ENVIRONMENTS} environments\n")
    print(
        "| db | validate s | plan (all new) s | apply (create) s | plan (unchanged) s "
        "| list services s (baseline) | plan/list | re-apply s (writes) | plan (50 edits) s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for db, r in results.items():
        print(
            f"| {db} | {r['validate_s']:.3f} | {r['plan_empty_s']:.3f} | {r['apply_s']:.2f} | "
            f"{r['plan_same_s']:.3f} | {r['list_s']:.3f} | {r['plan_same_s'] / r['list_s']:.1f}x | "
            f"{r['reapply_s']:.3f} ({int(r['reapply_writes'])}) | {r['plan_edit_s']:.3f} "
            f"({int(r['edit_changes'])} changes) |"
        )
    print("\ntarget: plan of an unchanged 500-service file < 2 s on both; re-apply 0 writes")


if __name__ == "__main__":
    main()
