"""Backup benchmark: pilothouse's pipeline against the ways people back up PostgreSQL today.

    ./dev bench backup          (or .venv/bin/python bench/backup.py [--scale 50] [--runs 3])

Two databases on the local PostgreSQL, built once and kept between runs:
  - bench_pgbench: pgbench at --scale (50: about 750 MB, very compressible);
  - bench_random: about the same dump size of random text, jsonb and bytea (barely compressible).
For each, in one run, median seconds of --runs runs, output bytes and peak RSS (largest single
process of the pipeline, from wait4) of:
  1. floor        pg_dump -Fc -Z0 > /dev/null           (the dump alone)
  2. pg_dump -Fc  pg_dump -Fc > file                     (default compression)
  3. hand-rolled  pg_dump | gzip | openssl enc -aes-256-cbc -pbkdf2 > file
  4. restic       pg_dump | restic backup --stdin        (fresh repository each run)
  5. pilothouse   dump -> zstd -> AES-256-GCM -> SHA-256 -> local storage, with row counts and
                  per-table content checksums in the dump's snapshot (the code path
                  `pilothouse backup run` uses)
  6. pilothouse without content checksums (row counts only: a target's
                  `--no-content-checksums`), to measure what the checksums cost
plus `pg_dump | zstd -3` once, as the size reference. Targets: pilothouse <= 1.2x the floor,
faster than 2-4, output no larger than pg_dump | zstd -3, peak RSS < 150 MB. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ADMIN = os.environ.get("PILOTHOUSE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
HOST, PORT, USER = "127.0.0.1", "5432", "postgres"

PILOTHOUSE_CHILD = """
import sys, time
from pathlib import Path
from sqlalchemy.engine import make_url
from pilothouse.backups.jobs import _take
from pilothouse.backups.storage import LocalStorage
from pilothouse.core.crypto import Keyring, key_id
key = bytes(range(32))
ring = Keyring(key_id(key), {key_id(key): key})
storage = LocalStorage(Path(sys.argv[2]))
started = time.perf_counter()
checksums = sys.argv[4] == "1"
out = _take("postgresql", make_url(sys.argv[1]), storage, "b.enc", ring, None, checksums=checksums)
print(time.perf_counter() - started, file=open(sys.argv[3], "w"))
"""

MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1], shell=True, executable="/bin/bash").returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def dsn(db: str) -> str:
    return f"postgresql://{USER}@{HOST}:{PORT}/{db}"


def exists(db: str) -> bool:
    with psycopg.connect(ADMIN) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
            is not None
        )


def build_pgbench(scale: int) -> None:
    name = "bench_pgbench"
    if exists(name):
        with psycopg.connect(dsn(name)) as conn:
            rows = conn.execute("SELECT count(*) FROM pgbench_branches").fetchone()[0]
        if rows == scale:
            return
    print(f"building {name} (pgbench scale {scale})...", flush=True)
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    pgbench = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    subprocess.run(
        [pgbench, "-i", "-s", str(scale), "-q", "-h", HOST, "-U", USER, name],
        check=True,
        capture_output=True,
    )


def build_random(target_bytes: int) -> None:
    """Random text, jsonb and bytea until the plain dump is about `target_bytes`."""
    name = "bench_random"
    marker = f"size {target_bytes}"
    if exists(name):
        with psycopg.connect(dsn(name)) as conn:
            found = conn.execute("SELECT obj_description('noise'::regclass)").fetchone()[0]
        if found == marker:
            return
    print(f"building {name} (~{target_bytes / 1e6:.0f} MB of random data)...", flush=True)
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    # one row: ~1 KB of bytea (hex in the dump: 2 KB), ~200 B text, ~150 B jsonb -> ~2.4 KB dumped
    rows = target_bytes // 2400
    with psycopg.connect(dsn(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE noise (id bigint PRIMARY KEY, body text, doc jsonb, blob bytea)")
        step = 50_000
        for start in range(0, rows, step):
            conn.execute(
                """
                INSERT INTO noise
                SELECT g,
                       md5(random()::text) || md5(random()::text) || md5(random()::text)
                         || md5(random()::text) || md5(random()::text) || md5(random()::text),
                       jsonb_build_object('a', md5(random()::text), 'b', random(),
                                          'c', md5(random()::text), 'n', g),
                       (SELECT string_agg(decode(md5(random()::text || g || i), 'hex'), ''::bytea)
                          FROM generate_series(1, 64) i)
                FROM generate_series(%s::bigint, %s::bigint) g
                """,
                (start + 1, min(start + step, rows)),
            )
        conn.execute(f"COMMENT ON TABLE noise IS '{marker}'")
        conn.execute("VACUUM ANALYZE noise")


def measure(command: str) -> tuple[float, int]:
    """(seconds, peak RSS in MB of the largest process) of a shell command."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURE, command], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{command!r} failed: {proc.stderr.strip()[-500:]}")
    return seconds, int(proc.stdout.strip().splitlines()[-1]) // 1024


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def entries(db: str, work: Path) -> dict[str, tuple[str, Path | None, str | None]]:
    """name -> (command, output path, setup command run untimed before each run)."""
    pgd = f"pg_dump -h {HOST} -U {USER}"
    repo = work / "restic"
    return {
        "floor: pg_dump -Fc -Z0 > /dev/null": (f"{pgd} -Fc -Z0 {db} > /dev/null", None, None),
        "pg_dump -Fc": (f"{pgd} -Fc {db} > {work}/fc.dump", work / "fc.dump", None),
        "pg_dump | gzip | openssl aes-256-cbc": (
            f"set -o pipefail; {pgd} {db} | gzip | openssl enc -aes-256-cbc -pbkdf2 "
            f"-pass pass:bench > {work}/sql.gz.enc",
            work / "sql.gz.enc",
            None,
        ),
        "pg_dump | restic backup --stdin": (
            f"set -o pipefail; {pgd} {db} | RESTIC_PASSWORD=bench restic -q -r {repo} backup "
            f"--stdin --stdin-filename {db}.sql",
            repo,
            f"rm -rf {repo} && RESTIC_PASSWORD=bench restic -q -r {repo} init",
        ),
        "pilothouse": (  # a new process, as `pilothouse backup run`
            f"rm -rf {work}/ph && {sys.executable} -c '{PILOTHOUSE_CHILD}' {dsn(db)} {work}/ph "
            f"{work}/ph.seconds 1",
            work / "ph",
            None,
        ),
        "pilothouse, no content checksums": (
            f"rm -rf {work}/ph && {sys.executable} -c '{PILOTHOUSE_CHILD}' {dsn(db)} {work}/ph "
            f"{work}/ph.seconds 0",
            work / "ph",
            None,
        ),
    }


def bench(db: str, runs: int) -> list[dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="ph-bench-backup-"))
    results: list[dict[str, object]] = []
    try:
        seconds, _ = measure(f"pg_dump -h {HOST} -U {USER} {db} | zstd -3 -T2 -q > {work}/z.zst")
        zstd_bytes = size_of(work / "z.zst")
        (work / "z.zst").unlink()
        plan = entries(db, work)
        times: dict[str, list[float]] = {name: [] for name in plan}
        inner_names = {
            "pilothouse": "pilothouse (in the worker)",
            "pilothouse, no content checksums": "pilothouse, no checksums (in the worker)",
        }
        for inner_name in inner_names.values():
            times[inner_name] = []
        rss: dict[str, int] = {name: 0 for name in plan}
        out_bytes: dict[str, int] = {}
        for run in range(runs):
            for name, (command, output, setup) in plan.items():  # interleaved: fair to noise
                if setup:
                    subprocess.run(setup, shell=True, check=True, executable="/bin/bash")
                took, peak = measure(command)
                times[name].append(took)
                if name in inner_names:
                    # inside a running worker there is no interpreter start-up to pay
                    inner = float((work / "ph.seconds").read_text())
                    times[inner_names[name]].append(inner)
                rss[name] = max(rss[name], peak)
                out_bytes[name] = size_of(output) if output else 0
                print(f"  {db} run {run + 1} {name}: {took:.2f}s", flush=True)
        floor = statistics.median(times["floor: pg_dump -Fc -Z0 > /dev/null"])
        for name, inner_name in inner_names.items():
            rss[inner_name] = rss[name]
            out_bytes[inner_name] = out_bytes[name]
        for name in times:
            median = statistics.median(times[name])
            results.append(
                {
                    "db": db,
                    "entry": name,
                    "median_s": median,
                    "vs_floor": median / floor,
                    "bytes": out_bytes[name],
                    "rss_mb": rss[name],
                }
            )
        results.append(
            {
                "db": db,
                "entry": "size reference: pg_dump | zstd -3",
                "median_s": seconds,
                "vs_floor": seconds / floor,
                "bytes": zstd_bytes,
                "rss_mb": 0,
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50, help="pgbench scale (default 50)")
    parser.add_argument("--runs", type=int, default=3, help="runs per entry (median reported)")
    args = parser.parse_args()
    for tool in ("pg_dump", "restic", "openssl", "zstd", "gzip"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: ./dev bench backup installs it")
    build_pgbench(args.scale)
    with psycopg.connect(dsn("bench_pgbench")) as conn:
        pgbench_bytes = conn.execute("SELECT pg_database_size('bench_pgbench')").fetchone()[0]
    build_random(int(pgbench_bytes * 0.65))
    rows: list[dict[str, object]] = []
    for db in ("bench_pgbench", "bench_random"):
        with psycopg.connect(dsn(db)) as conn:
            size = conn.execute(f"SELECT pg_database_size('{db}')").fetchone()[0]
        print(f"{db}: {size / 1e6:.0f} MB on disk", flush=True)
        rows += bench(db, args.runs)
    print()
    for db in ("bench_pgbench", "bench_random"):
        median = {str(r["entry"]): float(str(r["median_s"])) for r in rows if r["db"] == db}
        on = median["pilothouse (in the worker)"]
        off = median["pilothouse, no checksums (in the worker)"]
        print(f"{db}: content checksums cost {100 * (on / off - 1):+.0f}% in the worker")
    print()
    print("| database | entry | median s | vs floor | output bytes | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        entry = str(r["entry"]).replace("|", "\\|")
        print(
            f"| {r['db']} | {entry} | {r['median_s']:.2f} | {r['vs_floor']:.2f}x | "
            f"{r['bytes']:,} | {r['rss_mb'] or '-'} |"
        )


if __name__ == "__main__":
    main()
