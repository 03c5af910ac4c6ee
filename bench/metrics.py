"""Metrics benchmark: push ingestion and window queries on SQLite and PostgreSQL.

    .venv/bin/python bench/metrics.py                       # defaults below, both databases
    .venv/bin/python bench/metrics.py --series 10000 --db postgres

For each database (SQLite in a temp dir, PostgreSQL in a throwaway database on
PILOTHOUSE_TEST_PG_URL):
  1. ingestion through `write_samples` (series lookup/creation + COPY or executemany) in batches
     of 5,000 samples spread over `--series` series, after a warm-up batch that creates them;
     next to it, the baseline: the same rows appended by the bare bulk path alone (no series
     lookup), in the same run;
  2. ingestion through the API: `POST /api/v1/metrics/ingest` with 5,000-sample JSON bodies
     (encoded beforehand), through the ASGI app in process with Starlette's TestClient (JSON
     parsing, input checks, validation, auth, write; no network), after `gc.freeze()` as
     `pilothouse serve` does, and after a warm-up that pushes every series once; its ratio to
     `write_samples` in the same run;
  3. 24 h of one sample a minute for every series (then the rollup job over it), and the P95
     over 24 h of one series among them: p50/p95 latency of `aggregate(...)` from raw samples,
     and again after the raw samples are dropped (read from the 1-minute/5-minute/hourly
     rollups and their sketches).
  4. The query at the issue's scale (`--scale-series`, `--days`): P95 over 24 h of one series
     among 10,000 with 30 days of data, seeded in bulk straight into the tables the way
     retention keeps it (see `query_at_scale`).
  5. Storage (`--storage-series`, `--storage-hours`, on a fresh database): 15-second samples,
     half counters and half gauges, written and rolled up; bytes per raw sample (table and
     indexes) and per series-day of rollups. The same samples go to Prometheus's TSDB through
     `promtool tsdb create-blocks-from openmetrics` (Debian's prometheus package) for the
     comparison. `--only-storage` runs this part alone.
`--only-push` runs parts 1 and 2 alone (the ingestion figures, about a minute).
Query latencies: p50/p95 leave out the first query of each series of repeats (a warm-up, shown
as `first ms`); `gc passes` counts the queries a full garbage-collector pass ran in.
Prints figures, ratios and the load average; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from fastapi.testclient import TestClient

from pilothouse import migrations
from pilothouse.app import create_app
from pilothouse.config import Settings
from pilothouse.core.db import Database
from pilothouse.metrics.models import (
    MetricRollup,
    MetricRollupProgress,
    MetricSeries,
    metric_samples,
)
from pilothouse.metrics.query import aggregate
from pilothouse.metrics.samples import Sample, bulk_insert, write_samples
from pilothouse.metrics.sketch import dumps, new_sketch
from pilothouse.metrics.storage import Retention, floor_to, retain, rollup
from pilothouse.setup import _bootstrap

PG_ADMIN_URL = os.environ.get("PILOTHOUSE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 5000
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class FullPasses:
    """Counts the cyclic collector's full (generation 2) passes, to tell them apart in a
    latency tail."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            self.count += 1


FULL_PASSES = FullPasses()
gc.callbacks.append(FULL_PASSES)


def tail(prefix: str, timings: list[tuple[float, bool]]) -> dict[str, float]:
    """p50/p95 of (ms, a full GC pass ran) timings without the first query (a warm-up: the
    statements' first compilation, PostgreSQL's first pass over index entries a DELETE left
    dead), which is reported on its own; the slowest of the rest, and how many queries a full
    GC pass ran in."""
    values = [ms for ms, _ in timings[1:]]
    return {
        f"{prefix} p50 ms": statistics.median(values),
        f"{prefix} p95 ms": statistics.quantiles(values, n=100)[94],
        f"{prefix} first ms": timings[0][0],
        f"{prefix} max ms": max(values),
        f"{prefix} gc passes": sum(1 for _, full in timings if full),
    }


async def timed(query: Any) -> tuple[float, bool]:
    """(milliseconds, whether a full GC pass ran) of one awaited query."""
    passes = FULL_PASSES.count
    began = time.perf_counter()
    await query
    return (time.perf_counter() - began) * 1000, FULL_PASSES.count > passes


def _batch(series: int, start: int, at: datetime) -> list[Sample]:
    return [
        Sample(
            "http_request_duration_ms",
            {"service": f"svc{(start + i) % series % 50}", "replica": f"r{(start + i) % series}"},
            float((start + i) % 997),
            at + timedelta(milliseconds=i),
            unit="ms",
        )
        for i in range(BATCH)
    ]


async def ingest(db: Database, series: int, batches: int) -> dict[str, float]:
    await write_samples(db, [s for k in range(0, series, BATCH) for s in _batch(series, k, NOW)])
    work = [_batch(series, b * BATCH, NOW + timedelta(seconds=b)) for b in range(batches)]
    started = time.perf_counter()
    for batch in work:
        await write_samples(db, batch)
    ours = batches * BATCH / (time.perf_counter() - started)
    # The same rows (series spread, times increasing) through the bare bulk path alone.
    later = int(NOW.timestamp() * 1000) + 3_600_000
    bare_rows = [
        [(1 + (b * BATCH + i) % series, later + b * 1000 + i, float(i % 997)) for i in range(BATCH)]
        for b in range(batches)
    ]
    started = time.perf_counter()
    for rows in bare_rows:
        async with db.session() as session:
            await bulk_insert(session, db.dialect, rows)
    bare = batches * BATCH / (time.perf_counter() - started)
    return {"write_samples/s": ours, "bare bulk/s": bare}


def ingest_api(url: str, tmp: Path, series: int, batches: int) -> tuple[float, float]:
    """Samples per second through the API, and the process's CPU milliseconds per request
    (both threads: the test client's and the app's event loop; not the database server's)."""
    token = asyncio.run(_bootstrap(url, "admin"))
    settings = Settings(data_dir=tmp / "data", database_url=url, role="api", max_body_bytes=8 << 20)
    with TestClient(create_app(settings, migrate=False)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.post(
            "/api/v1/environments", json={"name": "bench"}, headers=headers
        ).is_success
        bodies = []
        for b in range(batches):
            at = NOW + timedelta(hours=1, seconds=b)
            bodies.append(
                {
                    "environment": "bench",
                    "samples": [
                        {
                            "name": s.name,
                            "tags": dict(s.tags),
                            "value": s.value,
                            "timestamp": s.at.isoformat(),
                            "unit": "ms",
                        }
                        for s in _batch(series, b * BATCH, at)
                    ],
                }
            )
        # Encoded before the clock starts: the figure is the server's side (what a client
        # spends encoding is its own).
        encoded = [json.dumps(body).encode() for body in bodies]
        headers["Content-Type"] = "application/json"
        # Warm-up: every series once (as the store path's warm-up does), so no timed request
        # creates series (a push names series of its own environment: new ones here).
        for body in encoded[: -(-series // BATCH)]:
            client.post("/api/v1/metrics/ingest", content=body, headers=headers)
        # As `pilothouse serve` does once the app is built (cli.py): what is loaded stays out
        # of the collector's full passes.
        gc.collect()
        gc.freeze()
        cpu = time.process_time()
        started = time.perf_counter()
        for body in encoded:
            response = client.post("/api/v1/metrics/ingest", content=body, headers=headers)
            assert response.status_code == 200, response.text
        rate = batches * BATCH / (time.perf_counter() - started)
        return rate, (time.process_time() - cpu) * 1000 / batches


async def query(db: Database, series: int, repeats: int) -> dict[str, float]:
    async with db.session() as session:
        await session.execute(sa.delete(metric_samples))
    start = NOW - timedelta(hours=24)
    minutes = 24 * 60
    pending: list[Sample] = []
    loaded = time.perf_counter()
    for m in range(minutes):
        at = start + timedelta(minutes=m)
        pending.extend(
            Sample("latency_ms", {"replica": f"r{k}"}, float((m * 7 + k) % 1000), at)
            for k in range(series)
        )
        if len(pending) >= BATCH * 10:
            await write_samples(db, pending)
            pending = []
    await write_samples(db, pending)
    load_rate = series * minutes / (time.perf_counter() - loaded)
    later = NOW + timedelta(minutes=2)

    async def timings() -> list[tuple[float, bool]]:
        out = []
        for i in range(repeats):
            tag = {"replica": f"r{(i * 37) % series}"}
            query = aggregate(
                db, "latency_ms", tag, window=timedelta(hours=24), stat="p95", now=NOW
            )
            out.append(await timed(query))
        return out

    raw = await timings()
    rolled_at = time.perf_counter()
    while True:
        written = await rollup(db, later)
        if not any(written.values()):
            break
    rollup_s = time.perf_counter() - rolled_at
    await retain(db, later, Retention(raw=60))
    from_rollups = await timings()

    return {
        "load samples/s": load_rate,
        **tail("raw", raw),
        **tail("rollup", from_rollups),
        "rollup job s": rollup_s,
    }


RollupRow = tuple[int, int, int, int, float, float, float, float, bytes]
_ROLLUP_ROW = struct.Struct("!hiqiiiqiqidididid")


def _copy_rollups(
    rows: list[tuple[int, int, int, int, float, float, float, float, bytes]],
) -> bytes:
    parts = [b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)]
    pack = _ROLLUP_ROW.pack
    for sid, res, bucket, count, total, low, high, last, sketch in rows:
        parts.append(
            pack(9, 8, sid, 4, res, 8, bucket, 8, count, 8, total, 8, low, 8, high, 8, last)
            + struct.pack("!i", len(sketch))
            + sketch
        )
    parts.append(struct.pack("!h", -1))
    return b"".join(parts)


async def _insert_rollups(db: Database, rows: list[RollupRow]) -> None:
    """Rollup rows appended in bulk: binary COPY on PostgreSQL, executemany on SQLite."""
    async with db.session() as session:
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        if db.dialect == "postgresql":
            async with (
                driver.cursor() as cursor,
                cursor.copy(
                    "COPY metric_rollups (series_id, resolution, bucket, count, sum, min, max, "
                    "last, sketch) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                await copy.write(_copy_rollups(rows))
        else:
            await driver.executemany(
                "INSERT INTO metric_rollups (series_id, resolution, bucket, count, sum, min, "
                "max, last, sketch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )


async def query_at_scale(
    db: Database, series: int, days: int, raw_every: int, repeats: int
) -> dict[str, float]:
    """The issue's query case: P95 over 24 h of one series among `series`, with `days` of data
    held the way retention keeps it: hourly rollups over all the days, 5-minute and 1-minute
    rollups over the last 2 hours (the window's edges), raw samples (one per `raw_every` s) over
    the last 24 h. Seeded straight into the tables in bulk; returns seed and query figures."""
    now = NOW + timedelta(minutes=17, seconds=30)  # not on an hour: the window has edges
    now_s = int(now.timestamp())
    done = {60: floor_to(now_s - 120, 60)}
    done[300] = floor_to(done[60], 300)
    done[3600] = floor_to(done[300], 3600)
    seeded = time.perf_counter()
    await write_samples(
        db, [Sample("latency_ms", {"replica": f"r{k}"}, 100.0, now) for k in range(series)]
    )
    async with db.session(write=False) as session:
        ids = [
            sid
            for (sid,) in await session.execute(
                sa.select(MetricSeries.id).where(MetricSeries.name == "latency_ms")
            )
        ]
    blobs = [dumps(new_sketch(80.0 + (j * 7 + i) % 40 for i in range(12))) for j in range(8)]
    rollup_rows = 0
    for res, first in ((3600, done[3600] - days * 86400), (300, now_s - 7200), (60, now_s - 7200)):
        start = floor_to(first, res)
        buckets = list(range(start, done[res], res))
        pending: list[Any] = []
        for n, bucket in enumerate(buckets):
            count = 12 if res == 3600 else 1
            pending.extend(
                (sid, res, bucket, count, 1200.0, 80.0, 119.0, 100.0, blobs[(n + sid) % 8])
                for sid in ids
            )
            if len(pending) >= 200_000:
                await _insert_rollups(db, pending)
                rollup_rows += len(pending)
                pending = []
        if pending:
            await _insert_rollups(db, pending)
            rollup_rows += len(pending)
    raw_rows = 0
    pending_raw: list[tuple[int, int, float]] = []
    for at in range(now_s - 86400, now_s, raw_every):
        pending_raw.extend((sid, at * 1000, 80.0 + (at // 60 + sid) % 40) for sid in ids)
        if len(pending_raw) >= 200_000:
            async with db.session() as session:
                await bulk_insert(session, db.dialect, pending_raw)
            raw_rows += len(pending_raw)
            pending_raw = []
    async with db.session() as session:
        if pending_raw:
            await bulk_insert(session, db.dialect, pending_raw)
            raw_rows += len(pending_raw)
        for res, until in done.items():
            mark = db.insert(MetricRollupProgress).values(resolution=res, done_until=until)
            await session.execute(
                mark.on_conflict_do_update(
                    index_elements=["resolution"], set_={"done_until": until}
                )
            )
    if db.dialect == "postgresql":
        async with db.session() as session:
            await session.execute(sa.text("ANALYZE"))
    seed_s = time.perf_counter() - seeded
    out = []
    for i in range(repeats):
        tag = {"replica": f"r{(i * 7919) % series}"}
        query = aggregate(db, "latency_ms", tag, window=timedelta(hours=24), stat="p95", now=now)
        out.append(await timed(query))
    return {
        "scale series": series,
        "scale rollup rows": rollup_rows,
        "scale raw rows": raw_rows,
        "scale seed s": seed_s,
        **tail("scale", out),
    }


def storage_data(series: int, hours: int, every: int) -> list[Sample]:
    """The storage case's samples: half counters (requests served), half gauges (latency in ms,
    two decimals), one sample per `every` seconds, as a scrape records them."""
    rng = random.Random(14)
    start = NOW - timedelta(hours=hours)
    out: list[Sample] = []
    totals = [0.0] * series
    for n in range(hours * 3600 // every):
        at = start + timedelta(seconds=n * every)
        for k in range(series):
            if k % 2:
                totals[k] += rng.randint(0, 50)
                out.append(Sample("requests_total", {"replica": f"r{k}"}, totals[k], at))
            else:
                value = round(120 + 30 * math.sin(n / 40 + k) + rng.gauss(0, 8), 2)
                out.append(Sample("latency_ms", {"replica": f"r{k}"}, value, at))
    return out


async def storage(db: Database, samples: list[Sample], series: int, hours: int) -> dict[str, float]:
    """Bytes per raw sample (table and indexes) and per series-day of rollups (all three
    levels), after the rollup job ran over the samples."""
    for start in range(0, len(samples), 50_000):
        await write_samples(db, samples[start : start + 50_000])
    later = NOW + timedelta(minutes=2)
    while any((await rollup(db, later)).values()):
        pass
    async with db.session() as session:
        if db.dialect == "postgresql":
            raw_bytes = await session.scalar(
                sa.text("SELECT pg_total_relation_size('metric_samples')")
            )
            rollup_bytes = await session.scalar(
                sa.text("SELECT pg_total_relation_size('metric_rollups')")
            )
        else:
            query = sa.text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
            sizes: dict[str, int] = {k: int(v) for k, v in await session.execute(query)}
            raw_bytes = sum(v for k, v in sizes.items() if "metric_samples" in k)
            rollup_bytes = sum(v for k, v in sizes.items() if "metric_rollups" in k)
        # The table's bytes split by level in proportion to each level's row payload (eight
        # 8-byte columns and the sketch).
        weight = sa.func.sum(sa.func.length(MetricRollup.sketch) + 64)
        levels = {
            int(res): float(w)
            for res, w in await session.execute(
                sa.select(MetricRollup.resolution, weight).group_by(MetricRollup.resolution)
            )
        }
    days = hours / 24
    total_weight = sum(levels.values()) or 1.0
    per_day = int(rollup_bytes or 0) / (series * days)
    return {
        "storage samples": len(samples),
        "bytes/raw sample": int(raw_bytes or 0) / len(samples),
        "rollup bytes/series-day": per_day,
        **{
            f"{res}s bytes/series-day": per_day * levels.get(res, 0.0) / total_weight
            for res in (60, 300, 3600)
        },
    }


def prometheus_storage(
    tmp: Path, samples: list[Sample], series: int, hours: int
) -> dict[str, float]:
    """The same samples as Prometheus TSDB blocks (promtool tsdb create-blocks-from openmetrics,
    Debian's prometheus package): bytes of the block directories per sample."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return {}
    text = tmp / "samples.om"
    by_series: dict[tuple[str, str], list[str]] = {}
    for sample in samples:
        by_series.setdefault((sample.name, sample.tags["replica"]), []).append(
            f"{sample.value} {sample.at.timestamp():.3f}"
        )
    with text.open("w") as out:
        for name in sorted({name for name, _ in by_series}):
            kind = "counter" if name.endswith("_total") else "gauge"
            family = name.removesuffix("_total")
            out.write(f"# TYPE {family} {kind}\n")
            for (metric, replica), points in by_series.items():
                if metric == name:
                    out.writelines(f'{name}{{replica="{replica}"}} {p}\n' for p in points)
        out.write("# EOF\n")
    blocks = tmp / "tsdb"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(text), str(blocks)],
        check=True,
        capture_output=True,
    )
    size = sum(f.stat().st_size for f in blocks.rglob("*") if f.is_file())
    chunks = sum(f.stat().st_size for f in blocks.rglob("chunks/*") if f.is_file())
    return {
        "prometheus bytes/sample": size / len(samples),
        "prometheus chunk bytes/sample": chunks / len(samples),
        "prometheus bytes/series-day": size / (series * hours / 24),
    }


def run_storage(kind: str, url: str, data: list[Sample], args: Any) -> dict[str, Any]:
    """The storage case on a fresh database of this kind."""
    migrations.upgrade(url)

    async def part() -> dict[str, float]:
        db = Database(url)
        try:
            return await storage(db, data, args.storage_series, args.storage_hours)
        finally:
            await db.dispose()

    result: dict[str, Any] = {"db": kind, **asyncio.run(part())}
    print(kind, result, flush=True)
    return result


def run_one(kind: str, url: str, tmp: Path, args: Any) -> dict[str, Any]:
    migrations.upgrade(url)
    result: dict[str, Any] = {"db": kind}

    async def store_part() -> None:
        db = Database(url)
        try:
            result.update(await ingest(db, args.series, args.batches))
        finally:
            await db.dispose()

    asyncio.run(store_part())
    result["api samples/s"], result["api cpu ms/batch"] = ingest_api(
        url, tmp, args.series, args.batches
    )
    result["api/write_samples"] = result["api samples/s"] / result["write_samples/s"]

    async def query_part() -> None:
        db = Database(url)
        try:
            result.update(await query(db, args.query_series, args.repeats))
        finally:
            await db.dispose()

    if not args.only_push:
        asyncio.run(query_part())

    async def scale_part() -> None:
        db = Database(url)
        try:
            async with db.session() as session:
                for table in ("metric_samples", "metric_rollups", "metric_rollup_progress"):
                    await session.execute(sa.text(f"DELETE FROM {table}"))
            result.update(
                await query_at_scale(db, args.scale_series, args.days, args.raw_every, args.repeats)
            )
        finally:
            await db.dispose()

    if args.scale_series and not args.only_push:
        asyncio.run(scale_part())

    result["load average"] = os.getloadavg()[0]
    print(kind, result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=10_000, help="series ingestion spreads over")
    parser.add_argument("--batches", type=int, default=40, help="5,000-sample batches timed")
    parser.add_argument("--query-series", type=int, default=1_000, help="series with 24 h of data")
    parser.add_argument("--repeats", type=int, default=100, help="queries timed per path")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--scale-series",
        type=int,
        default=10_000,
        help="series of the query-at-scale case (0: skip)",
    )
    parser.add_argument("--days", type=int, default=30, help="days of data in that case")
    parser.add_argument("--raw-every", type=int, default=300, help="seconds between raw samples")
    parser.add_argument(
        "--storage-series", type=int, default=50, help="series of the storage case (0: skip)"
    )
    parser.add_argument("--storage-hours", type=int, default=24, help="hours of 15 s samples")
    parser.add_argument("--only-storage", action="store_true", help="run the storage case only")
    parser.add_argument(
        "--only-push", action="store_true", help="run parts 1-2 (ingestion) only, no storage case"
    )
    args = parser.parse_args()
    results = []
    stored: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = (
            storage_data(args.storage_series, args.storage_hours, 15)
            if args.storage_series and not args.only_push
            else []
        )
        if args.db in ("sqlite", "both"):
            if not args.only_storage:
                results.append(run_one("sqlite", f"sqlite:///{tmp}/bench.db", Path(tmp), args))
            if data:
                stored.append(run_storage("sqlite", f"sqlite:///{tmp}/storage.db", data, args))
        if args.db in ("postgres", "both"):
            for part in ("bench", "storage"):
                if (part == "storage" and not data) or (part == "bench" and args.only_storage):
                    continue
                name = f"pilothouse_{part}_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
                try:
                    if part == "bench":
                        results.append(run_one("postgres", url, Path(tmp) / "pg", args))
                    else:
                        stored.append(run_storage("postgres", url, data, args))
                finally:
                    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if data:
            prom = prometheus_storage(Path(tmp), data, args.storage_series, args.storage_hours)
            if prom:
                print("prometheus", prom, flush=True)
                stored.append(
                    {
                        "db": "prometheus tsdb",
                        "bytes/raw sample": prom["prometheus bytes/sample"],
                        "rollup bytes/series-day": prom["prometheus bytes/series-day"],
                        "chunk bytes/sample": prom["prometheus chunk bytes/sample"],
                    }
                )
    columns = [
        "db",
        "write_samples/s",
        "bare bulk/s",
        "api samples/s",
        "api/write_samples",
        "api cpu ms/batch",
        "load samples/s",
        "raw p50 ms",
        "raw p95 ms",
        "rollup p50 ms",
        "rollup p95 ms",
        "rollup first ms",
        "rollup gc passes",
        "rollup job s",
        "scale seed s",
        "scale p50 ms",
        "scale p95 ms",
        "scale first ms",
        "scale max ms",
        "scale gc passes",
        "load average",
    ]
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in results:
        cells = [r["db"]] + [
            "-" if c not in r else f"{r[c]:,.0f}" if r[c] >= 100 else f"{r[c]:.2f}"
            for c in columns[1:]
        ]
        print("| " + " | ".join(cells) + " |")
    _print_storage(stored)


def _print_storage(stored: list[dict[str, Any]]) -> None:
    if not stored:
        return
    print(
        "\n| store | samples | bytes per raw sample | bytes per series-day (rollups; TSDB: raw) |"
    )
    print("|---|---|---|---|")
    for r in stored:
        print(
            f"| {r['db']} | {r.get('storage samples', '-')} | {r['bytes/raw sample']:.1f} | "
            f"{r['rollup bytes/series-day']:,.0f} |"
        )


if __name__ == "__main__":
    main()
