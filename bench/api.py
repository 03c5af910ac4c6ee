"""API benchmark: seed through the service layer, then measure through a real uvicorn server.

    ./dev bench                      # full size: 100,000 deployments, 1,000,000 log lines
    ./dev bench --deployments 10000 --log-lines 100000 --db sqlite

For each database (SQLite in a temp dir, PostgreSQL in a throwaway database on
PILOTHOUSE_TEST_PG_URL): insert N deployments across 100 services and M log lines through the
service layer, start `pilothouse serve` as a subprocess, then measure
  - p50/p95 of GET /api/v1/deployments?service=X&limit=50 (latest 50 of one service), and
  - lines/s of POST /api/v1/deployments/{id}/logs/batch (1,000 lines per request),
each next to a bare FastAPI endpoint (GET returning a small JSON; POST parsing the same body)
served by uvicorn the same way in the same run. Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from pilothouse import migrations
from pilothouse.access import Principal
from pilothouse.artifacts import service as artifacts
from pilothouse.core.crypto import Keyring
from pilothouse.core.db import Database
from pilothouse.deployments import service as deployments
from pilothouse.environments import service as environments
from pilothouse.services import service as services
from pilothouse.users import service as users

NO_KEYS = Keyring(current=b"", keys={})  # the bench sets no variables

PG_ADMIN_URL = os.environ.get("PILOTHOUSE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SERVICES = 100
SHA = "0123456789abcdef" * 2 + "01234567"

BARE_APP = textwrap.dedent(
    """
    from typing import Any
    from fastapi import FastAPI
    from pydantic import BaseModel, Field

    app = FastAPI()

    class Line(BaseModel):
        message: str
        level: str = "info"
        source: str = "deploy"
        metadata: dict[str, Any] | None = None

    class Batch(BaseModel):
        lines: list[Line] = Field(min_length=1, max_length=10000)

    @app.get("/bare")
    async def bare() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bare/batch", status_code=201)
    async def bare_batch(body: Batch) -> dict[str, int]:
        return {"accepted": len(body.lines)}
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def progress(label: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    end = "\n" if done >= total else ""
    print(f"\r  {label}: {done:,}/{total:,} ({rate:,.0f}/s)", end=end, flush=True)


async def seed(url: str, n_deployments: int, n_lines: int) -> dict[str, Any]:
    """Insert through the service layer; returns the admin token and ids to measure with."""
    db = Database(url)
    timings: dict[str, float] = {}
    try:
        async with db.session() as session:
            user, token = await users.bootstrap_admin(session, "bench")
            admin = Principal(id=user.id, name=user.name, role="admin")
            await environments.create_environment(session, admin, name="bench", type="production")
            service_ids = []
            for i in range(SERVICES):
                svc = await services.create_service(
                    session, admin, environment="bench", name=f"svc-{i:03d}", resources={}
                )
                await artifacts.register_artifact(
                    session, admin, service=str(svc.id), version="v1.0.0", commit_sha=SHA
                )
                service_ids.append(str(svc.id))

        started = time.perf_counter()
        per_tx = 500
        deployment_ids: list[uuid.UUID] = []
        for start in range(0, n_deployments, per_tx):
            async with db.session() as session:
                for i in range(start, min(start + per_tx, n_deployments)):
                    dep = await deployments.create_deployment(
                        session, admin, service=service_ids[i % SERVICES], version="v1.0.0"
                    )
                    # One active deployment per service: close each one (cheapest legal end).
                    await deployments.transition(
                        session, dep, "failed", actor=admin, reason="bench"
                    )
                    if len(deployment_ids) < 100:
                        deployment_ids.append(dep.id)
            progress("deployments", min(start + per_tx, n_deployments), n_deployments, started)
        timings["deployments_per_s"] = n_deployments / (time.perf_counter() - started)

        started = time.perf_counter()
        batch = 10_000
        for start in range(0, n_lines, batch):
            count = min(batch, n_lines - start)
            target = deployment_ids[(start // batch) % len(deployment_ids)]
            lines = [
                {"message": f"step {start + j} done", "level": "info", "source": "deploy"}
                for j in range(count)
            ]
            async with db.session() as session:
                await deployments.append_logs(session, admin, target, lines, keyring=NO_KEYS)
            progress("log lines", start + count, n_lines, started)
        timings["service_lines_per_s"] = n_lines / (time.perf_counter() - started)
        async with db.session(write=False) as session:
            total = await session.scalar(sa.text("SELECT count(*) FROM deployments"))
            lines_total = await session.scalar(sa.text("SELECT count(*) FROM deployment_logs"))
        return {
            "token": token,
            "service": service_ids[SERVICES // 2],
            "deployment": str(deployment_ids[0]),
            "rows": total,
            "lines": lines_total,
            **timings,
        }
    finally:
        await db.dispose()


def start_server(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None:
                detail = proc.stderr.read().decode() if proc.stderr else "server died"
                raise RuntimeError(detail) from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def measure_get(port: int, path: str, headers: dict[str, str], n: int) -> list[float]:
    """Sequential keep-alive requests; returns latencies in ms (after a warm-up)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    out: list[float] = []
    for i in range(n + 50):
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        if i >= 50:
            out.append(elapsed)
    conn.close()
    return out


def measure_post(port: int, path: str, headers: dict[str, str], body: bytes, n: int) -> float:
    """Seconds for n sequential POSTs of body (after 3 warm-ups)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    hdrs = {**headers, "Content-Type": "application/json"}
    for i in range(n + 3):
        if i == 3:
            t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers=hdrs)
        response = conn.getresponse()
        data = response.read()
        if response.status != 201:
            raise RuntimeError(f"POST {path}: {response.status} {data[:200]!r}")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_one(kind: str, url: str, n_deployments: int, n_lines: int, requests: int) -> dict[str, Any]:
    print(f"\n== {kind}: seeding {n_deployments:,} deployments and {n_lines:,} log lines")
    migrations.upgrade(url)
    seeded = asyncio.run(seed(url, n_deployments, n_lines))
    print(f"  stored {seeded['rows']:,} deployments, {seeded['lines']:,} log lines")

    python = sys.executable
    env = {**os.environ, "PILOTHOUSE_DATABASE_URL": url}
    port, bare_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env["PILOTHOUSE_DATA_DIR"] = tmp
        (Path(tmp) / "bare_app.py").write_text(BARE_APP)
        server = start_server(
            [
                python,
                "-m",
                "pilothouse",
                "serve",
                "--port",
                str(port),
                "--no-access-log",
                "--role",
                "api",
            ],
            env,
            port,
        )
        bare = start_server(
            [
                python,
                "-m",
                "uvicorn",
                "bare_app:app",
                "--app-dir",
                tmp,
                "--port",
                str(bare_port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env,
            bare_port,
        )
        try:
            auth = {"Authorization": f"Bearer {seeded['token']}"}
            list_path = f"/api/v1/deployments?service={seeded['service']}&limit=50"
            api_ms = measure_get(port, list_path, auth, requests)
            bare_ms = measure_get(bare_port, "/bare", {}, requests)
            lines = [
                {"message": f"build output line {i}", "level": "info", "source": "build"}
                for i in range(1000)
            ]
            body = json.dumps({"lines": lines}).encode()
            posts = max(20, requests // 25)
            api_s = measure_post(
                port, f"/api/v1/deployments/{seeded['deployment']}/logs/batch", auth, body, posts
            )
            bare_s = measure_post(bare_port, "/bare/batch", {}, body, posts)
        finally:
            for proc in (server, bare):
                proc.terminate()
                proc.wait(timeout=15)
    result = {
        "db": kind,
        "deployments": seeded["rows"],
        "log_lines": seeded["lines"],
        "seed_deployments_per_s": seeded["deployments_per_s"],
        "seed_lines_per_s": seeded["service_lines_per_s"],
        "list_p50_ms": statistics.median(api_ms),
        "list_p95_ms": pct(api_ms, 95),
        "bare_get_p50_ms": statistics.median(bare_ms),
        "bare_get_p95_ms": pct(bare_ms, 95),
        "batch_lines_per_s": posts * 1000 / api_s,
        "bare_batch_lines_per_s": posts * 1000 / bare_s,
    }
    result["list_p95_ratio"] = result["list_p95_ms"] / result["bare_get_p95_ms"]
    result["batch_ratio"] = result["batch_lines_per_s"] / result["bare_batch_lines_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deployments", type=int, default=100_000)
    parser.add_argument("--log-lines", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1000, help="GETs per measurement")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()

    results = []
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            results.append(run_one("sqlite", url, args.deployments, args.log_lines, args.requests))
    if args.db in ("postgres", "both"):
        name = f"pilothouse_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
        try:
            results.append(
                run_one("postgres", url, args.deployments, args.log_lines, args.requests)
            )
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    columns = [
        "db",
        "deployments",
        "log lines",
        "list p50 ms",
        "list p95 ms",
        "bare GET p95 ms",
        "p95 ratio",
        "batch lines/s",
        "bare batch lines/s",
        "batch ratio",
        "seed deployments/s",
        "seed lines/s",
    ]
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in results:
        print(
            f"| {r['db']} | {r['deployments']:,} | {r['log_lines']:,} | {r['list_p50_ms']:.2f} | "
            f"{r['list_p95_ms']:.2f} | {r['bare_get_p95_ms']:.2f} | {r['list_p95_ratio']:.1f}x | "
            f"{r['batch_lines_per_s']:,.0f} | {r['bare_batch_lines_per_s']:,.0f} | "
            f"{r['batch_ratio']:.2f} | "
            f"{r['seed_deployments_per_s']:,.0f} | {r['seed_lines_per_s']:,.0f} |"
        )
    print("\ntargets: list p95 < 20 ms on both databases; batch ingestion >= 5,000 lines/s")
    for r in results:
        ok_list = "met" if r["list_p95_ms"] < 20 else "MISSED"
        ok_batch = "met" if r["batch_lines_per_s"] >= 5000 else "MISSED"
        print(f"  {r['db']}: list p95 {ok_list}, batch {ok_batch}")


if __name__ == "__main__":
    main()
