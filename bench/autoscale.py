"""Autoscaling benchmark: one evaluation round over 10,000 enabled policies, on SQLite and
PostgreSQL, with their CPU/memory windows read from precomputed rollups.

    .venv/bin/python bench/autoscale.py                       # 10,000 policies, both databases
    .venv/bin/python bench/autoscale.py --policies 2000 --db sqlite

For each database (SQLite in a temp dir, PostgreSQL in a throwaway database on
PILOTHOUSE_TEST_PG_URL):
  1. 10,000 services, each with an enabled step policy (5-minute period, 2 datapoints), one
     replica's CPU and memory series, and 5-minute rollups for the last 15 minutes (rolled up:
     the round reads no raw sample); then ANALYZE;
  2. the round, timed: `evaluate_round` reads the due policies, the active rollouts, the last
     scaling events and the windows (one aggregate per period length, grouped by service in
     the store), decides every policy and records the evaluation (one row per cohort of
     policies evaluated together; the first round moves every policy into one, 10,000 rows);
     `--repeats` rounds (every policy made due again before each), the median reported, with
     the median of each phase (`--profile N` adds a cProfile of one more round); then one
     round with the process's caches emptied (each policy's rule and the series map, kept
     between rounds: as after a restart); then the same with 1% of the services under
     load, whose scale-ups are carried out (each a `scale` through the release engine and
     an event, one transaction each);
  3. the baseline in the same run: the windows read the simple way, through the metrics
     capability's `query.aggregate` (one call per policy and period, as a caller outside the
     evaluator would), for `--baseline` policies, extrapolated to all of them.
Prints figures and ratios; asserts nothing. Target: a round < 1 s on both databases.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import os
import pstats
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from pilothouse import migrations
from pilothouse.autoscaling import evaluate
from pilothouse.autoscaling.models import ScalingCohort, ScalingPolicy
from pilothouse.autoscaling.schemas import DEFAULTS
from pilothouse.core.db import Database
from pilothouse.environments.models import Environment
from pilothouse.metrics import sketch
from pilothouse.metrics.models import MetricRollup, MetricRollupProgress, MetricSeries
from pilothouse.metrics.query import aggregate
from pilothouse.services.models import Service
from pilothouse.users import service as users

PG_ADMIN_URL = os.environ.get("PILOTHOUSE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
NOW = datetime(2026, 12, 1, 12, 0, 10, tzinfo=UTC)
PERIOD = 300
MIB = 1024 * 1024


async def seed(db: Database, policies: int, hot: int) -> None:
    """Services, policies, series and 5-minute rollups for the 15 minutes before NOW."""
    now_s = int(NOW.timestamp())
    done = now_s // PERIOD * PERIOD
    async with db.session() as session:
        admin, _ = await users.bootstrap_admin(session, "admin")
        env = Environment(owner_id=admin.id, name="bench", type="production")
        session.add(env)
        await session.flush()
        owner, env_id = admin.id, env.id
    ids = [uuid.uuid4() for _ in range(policies)]
    created = NOW - timedelta(days=1)
    for chunk in range(0, policies, 2000):
        part = ids[chunk : chunk + 2000]
        async with db.session() as session:
            await session.execute(
                sa.insert(Service),
                [
                    {
                        "id": sid,
                        "owner_id": owner,
                        "environment_id": env_id,
                        "name": f"svc{chunk + i}",
                        "target_replicas": 2,
                        "status": "running",
                        "created_at": created,
                        "updated_at": created,
                    }
                    for i, sid in enumerate(part)
                ],
            )
            await session.execute(
                sa.insert(ScalingPolicy),
                [
                    {
                        **DEFAULTS,
                        "min_instances": 1,
                        "max_instances": 10,
                        "service_id": sid,
                        "environment_id": env_id,
                        "created_at": created,
                        "updated_at": created,
                    }
                    for sid in part
                ],
            )
            series = []
            for i, sid in enumerate(part):
                for name in (evaluate.CPU, evaluate.MEMORY):
                    tags = {"environment": "bench", "service": f"svc{chunk + i}", "replica": "r1"}
                    key = hashlib.sha256(f"{name}{sorted(tags.items())}".encode()).hexdigest()
                    series.append(
                        {
                            "key": key,
                            "name": name,
                            "tags": tags,
                            "environment_id": env_id,
                            "service_id": sid,
                            "unit": "",
                            "source": "infrastructure",
                            "status": "healthy",
                            "created_at": created,
                        }
                    )
            await session.execute(sa.insert(MetricSeries), series)
            found = await session.execute(
                sa.select(MetricSeries.id, MetricSeries.name, MetricSeries.service_id).where(
                    MetricSeries.service_id.in_(part)
                )
            )
            hot_ids = set(ids[:hot])
            rollups = []
            sketches: dict[float, bytes] = {}
            for series_id, name, sid in found:
                cpu = 90.0 if sid in hot_ids else 50.0  # 50% of 0.5 cores: within thresholds
                value = cpu * 0.5 if name == evaluate.CPU else 300.0 * MIB
                if value not in sketches:
                    sketches[value] = sketch.dumps(sketch.new_sketch([value] * 20))
                for back in (3, 2, 1):
                    rollups.append(
                        {
                            "series_id": series_id,
                            "resolution": PERIOD,
                            "bucket": done - back * PERIOD,
                            "count": 20,
                            "sum": value * 20,
                            "min": value,
                            "max": value,
                            "last": value,
                            "sketch": sketches[value],
                        }
                    )
            await session.execute(sa.insert(MetricRollup), rollups)
    async with db.session() as session:
        for res in (60, 300, 3600):
            session.add(MetricRollupProgress(resolution=res, done_until=done // res * res))
    async with db.session() as session:
        # The planner's statistics, as autovacuum (PostgreSQL) would have them a minute after
        # such inserts; without them PostgreSQL joins 10,000 rows by nested index lookups.
        await session.execute(sa.text("ANALYZE"))


async def due_again(db: Database) -> None:
    """Every policy due again at NOW (not timed)."""
    async with db.session() as session:
        await session.execute(sa.update(ScalingCohort).values(evaluated_at=NOW - timedelta(days=1)))


async def rounds(
    db: Database, repeats: int
) -> tuple[list[float], list[float], list[evaluate.Round]]:
    """Wall and CPU seconds (this process: Python and, on SQLite, the store) of each round,
    and each round's result (with its phases' wall seconds)."""
    timings = []
    cpu = []
    done = []
    for _ in range(repeats):
        await due_again(db)
        began, began_cpu = time.perf_counter(), time.process_time()
        done.append(await evaluate.evaluate_round(db, NOW))
        timings.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    return timings, cpu, done


def phases(done: list[evaluate.Round]) -> dict[str, float]:
    """The median wall seconds of each phase over the rounds after the first (or the first)."""
    later = done[1:] or done
    names = list(later[0].phases)
    return {name: statistics.median(r.phases.get(name, 0.0) for r in later) for name in names}


async def profiled(db: Database, top: int) -> None:
    """One more round under cProfile; prints its `top` functions by cumulative time."""
    await due_again(db)
    profile = cProfile.Profile()
    profile.enable()
    await evaluate.evaluate_round(db, NOW)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(top)
    print(out.getvalue(), flush=True)


async def baseline(db: Database, sample: int) -> float:
    """Seconds per policy reading its two periods through `query.aggregate`."""
    async with db.session(write=False) as session:
        names = list(await session.scalars(sa.select(Service.name).limit(sample)))
    began = time.perf_counter()
    for name in names:
        for back in (1, 0):
            for metric in (evaluate.CPU, evaluate.MEMORY):
                await aggregate(
                    db,
                    metric,
                    {"service": name, "environment": "bench"},
                    window=timedelta(seconds=PERIOD),
                    now=NOW - timedelta(seconds=PERIOD * back),
                )
    return (time.perf_counter() - began) / max(len(names), 1)


def run_one(kind: str, url: str, args: Any) -> dict[str, Any]:
    migrations.upgrade(url)
    result: dict[str, Any] = {"db": kind, "policies": args.policies}

    async def work() -> None:
        db = Database(url)
        try:
            began = time.perf_counter()
            await seed(db, args.policies, 0)
            result["seed s"] = time.perf_counter() - began
            timings, cpu, done = await rounds(db, args.repeats)
            last = done[-1]
            result["phases"] = phases(done)
            if args.profile:
                await profiled(db, args.profile)
            result["round s (median)"] = statistics.median(timings)
            result["round CPU s (median)"] = statistics.median(cpu)
            result["load average"] = os.getloadavg()[0]
            result["round s (first)"] = timings[0]
            # A steady store but nothing kept in the process (as after a worker's restart):
            # every rule built and every series mapped again.
            evaluate._KNOWN.clear()
            evaluate._SERIES.clear()
            await due_again(db)
            began = time.perf_counter()
            await evaluate.evaluate_round(db, NOW)
            result["round s (process's first)"] = time.perf_counter() - began
            result["evaluated"] = last.evaluated
            per_policy = await baseline(db, args.baseline)
            result["aggregate() baseline s"] = per_policy * args.policies
            result["speed-up"] = result["aggregate() baseline s"] / result["round s (median)"]
            # 1% of the services under load: their scale-ups carried out in the round.
            async with db.session() as session:
                hot = list(await session.scalars(sa.select(Service.id).limit(args.policies // 100)))
                await session.execute(
                    sa.update(MetricRollup)
                    .where(
                        MetricRollup.series_id.in_(
                            sa.select(MetricSeries.id).where(
                                MetricSeries.service_id.in_(hot),
                                MetricSeries.name == evaluate.CPU,
                            )
                        )
                    )
                    .values(sum=45.0 * 20)  # 90% of 0.5 cores
                )
            await due_again(db)
            began = time.perf_counter()
            hot_round = await evaluate.evaluate_round(db, NOW)
            result["round with 1% scaling s"] = time.perf_counter() - began
            result["scaled"] = hot_round.scaled
        finally:
            await db.dispose()

    asyncio.run(work())
    print(kind, result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policies", type=int, default=10_000, help="enabled policies")
    parser.add_argument("--repeats", type=int, default=5, help="rounds timed")
    parser.add_argument("--baseline", type=int, default=200, help="policies read via aggregate()")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="profile one more round: top N"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.db in ("sqlite", "both"):
            results.append(run_one("sqlite", f"sqlite:///{Path(tmp)}/bench.db", args))
        if args.db in ("postgres", "both"):
            name = f"pilothouse_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
            try:
                results.append(run_one("postgres", url, args))
            finally:
                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    columns = [
        "db",
        "policies",
        "evaluated",
        "round s (median)",
        "round s (first)",
        "round s (process's first)",
        "round CPU s (median)",
        "aggregate() baseline s",
        "speed-up",
        "round with 1% scaling s",
        "scaled",
        "load average",
    ]
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in results:
        cells = [str(r["db"])] + [
            f"{r[c]:,}" if isinstance(r[c], int) else f"{r[c]:.3f}" for c in columns[1:]
        ]
        print("| " + " | ".join(cells) + " |")
    print("\nPhases of a round, wall seconds (median of the rounds after the first):")
    for r in results:
        print(f"  {r['db']}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["phases"].items()))


if __name__ == "__main__":
    main()
