"""Dashboard benchmark: the overview grid with 100 environments x 10 services (1,000 services).

    ./dev bench dashboard   (or .venv/bin/python bench/dashboard.py [--envs 100] [--services 10])

For SQLite (temp dir) and PostgreSQL (a throwaway database on PILOTHOUSE_TEST_PG_URL), a real
server (uvicorn, in a thread) is seeded with 1,000 services, each with a deployed artifact, 2
replicas and a health state; one in ten has an open incident and downtime this month, each
environment a completed backup. Then, with one keep-alive connection (http.client) and a logged-in
session cookie, p50/p95 of 200 requests of:
  1. `GET /` - the overview's first page (50 services: status, release, replicas, uptime, open
     incidents, last backup). Target p95 < 100 ms.
  2. `GET /?per_page=200` - a larger page.
  3. `GET /?status=unhealthy` - a status filter (derived over all 1,000 services).
  4. `GET /` as an htmx refresh (the grid fragment alone, what the page polls).
Then, on SQLite, in Debian's Chromium (when installed): navigation to the overview until loaded,
and a log line written through the API until visible on its deployment's page (SSE).
Baseline, in the same run: the JSON API listing the same services, `GET /api/v1/services` (all
1,000, bearer token). Ratios are page p95 / API p95. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
import uvicorn

from pilothouse import migrations
from pilothouse.app import create_app
from pilothouse.artifacts.models import Artifact
from pilothouse.backups.models import Backup, BackupTarget
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.environments.models import Environment
from pilothouse.healthchecks.models import Downtime, HealthState, Incident
from pilothouse.replicas.models import Replica
from pilothouse.services.models import Service
from pilothouse.setup import _bootstrap

PG_ADMIN_URL = os.environ.get("PILOTHOUSE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
HEALTH = ("healthy", "healthy", "healthy", "degraded", "unhealthy")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def seed(url: str, envs: int, per_env: int) -> str:
    token = await _bootstrap(url, "bench")
    assert token is not None
    db = Database(url)
    now = utcnow()
    try:
        async with db.session() as session:
            owner = (await session.execute(sa.text("SELECT id FROM users"))).scalar_one()
            owner = owner if isinstance(owner, uuid.UUID) else uuid.UUID(str(owner))
            for e in range(envs):
                env = Environment(owner_id=owner, name=f"env-{e:03d}", type="production")
                session.add(env)
                await session.flush()
                target = BackupTarget(
                    owner_id=owner,
                    environment_id=env.id,
                    name=f"db-{e:03d}",
                    engine="postgresql",
                    database_name="app",
                    dsn_encrypted="-",
                    dsn_display="postgresql://app:***@db/app",
                    schedule=None,
                    drill_schedule=None,
                )
                session.add(target)
                await session.flush()
                session.add(
                    Backup(
                        target_id=target.id,
                        environment_id=env.id,
                        name=f"backup_{e:03d}",
                        backup_type="full",
                        environment=env.name,
                        status="completed",
                        triggered_by="scheduled",
                        engine="postgresql",
                        database_name="app",
                        object_key=f"k{e}",
                        storage_location="/tmp",
                        storage_url="file:///tmp",
                        completed_at=now - timedelta(hours=e % 30),
                        retention_expires_at=now + timedelta(days=7),
                    )
                )
                for s in range(per_env):
                    n = e * per_env + s
                    svc = Service(
                        owner_id=owner,
                        environment_id=env.id,
                        name=f"svc-{s:02d}",
                        command="run {port}",
                        target_replicas=2,
                        status="running",
                    )
                    session.add(svc)
                    await session.flush()
                    session.add_all(
                        [
                            Artifact(
                                owner_id=owner,
                                service_id=svc.id,
                                version=f"v1.{n}.0",
                                commit_sha="a" * 40,
                                deployed=True,
                                deployed_at=now,
                            ),
                            Replica(service_id=svc.id, status="running"),
                            Replica(service_id=svc.id, status="running"),
                            HealthState(
                                target=f"service:{svc.id}",
                                service_id=svc.id,
                                status=HEALTH[n % len(HEALTH)],
                                streak_status="healthy",
                                streak=1,
                            ),
                        ]
                    )
                    if n % 10 == 0:
                        session.add_all(
                            [
                                Incident(
                                    service_id=svc.id,
                                    started_at=now - timedelta(minutes=5),
                                    status="unhealthy",
                                    cause="bench",
                                ),
                                Downtime(
                                    service_id=svc.id,
                                    started_at=now - timedelta(hours=3),
                                    ended_at=now - timedelta(hours=2),
                                    cause="bench",
                                ),
                            ]
                        )
    finally:
        await db.dispose()
    return token


class Server:
    """pilothouse (API only) under uvicorn in a thread, on a free port."""

    def __init__(self, settings: Settings) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings, migrate=False),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def login(conn: http.client.HTTPConnection, token: str) -> str:
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    nonce = re.search(r'name="csrf" value="([^"]+)"', page)
    assert nonce
    cookie = response.getheader("set-cookie", "").split(";")[0]
    body = f"token={token}&csrf={nonce.group(1)}&next=/"
    conn.request(
        "POST",
        "/login",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )
    done = conn.getresponse()
    done.read()
    assert done.status == 303, done.status
    return done.getheader("set-cookie", "").split(";")[0]


def timed(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str], n: int
) -> tuple[list[float], int, float]:
    """Wall time of each request, the body's size, and CPU ms per request of this process
    (the server thread and the client: a figure a loaded machine disturbs less than wall time)."""
    samples = []
    size = 0
    cpu = time.process_time()
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        samples.append(time.perf_counter() - start)
        assert response.status == 200, (path, response.status, body[:200])
        size = len(body)
    return samples, size, (time.process_time() - cpu) / n * 1000


def measure(
    url: str, data_dir: Path, envs: int, per_env: int, n: int, browser: bool = False
) -> dict[str, Any]:
    migrations.upgrade(url)
    start = time.perf_counter()
    token = asyncio.run(seed(url, envs, per_env))
    seeded = time.perf_counter() - start
    settings = Settings(data_dir=data_dir, database_url=url, role="api", log_level="warning")
    results: dict[str, Any] = {"seed_s": seeded}
    with Server(settings) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        cookie = login(conn, token)
        page = {"Cookie": cookie}
        cases = {
            "overview": ("/", page),
            "per_page_200": ("/?per_page=200", page),
            "status_filter": ("/?status=unhealthy", page),
            "fragment": ("/", {**page, "HX-Request": "true"}),
            "api": ("/api/v1/services", {"Authorization": f"Bearer {token}"}),
        }
        for name, (path, headers) in cases.items():
            timed(conn, path, headers, 10)  # warm up
            samples, size, cpu_ms = timed(conn, path, headers, n)
            results[name] = (pct(samples, 0.5), pct(samples, 0.95), size, cpu_ms)
        if browser and Path(CHROMIUM).exists():
            results["browser"] = in_chromium(conn, server.port, token)
        conn.close()
    return results


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def in_chromium(conn: http.client.HTTPConnection, port: int, token: str) -> dict[str, float]:
    """In Debian's Chromium: navigation to the overview fully loaded (median of 5, ms), and a
    log line written through the API until it is visible on the deployment's page (median of
    5, ms)."""
    import json
    import statistics

    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{port}"
    api = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request("GET", "/api/v1/services", headers=api)
    service = json.loads(conn.getresponse().read())[0]["id"]
    artifact = {"service": service, "version": "v9.9.9", "commit_sha": "b" * 40}
    conn.request("POST", "/api/v1/artifacts", body=json.dumps(artifact), headers=api)
    conn.getresponse().read()
    body = json.dumps({"service": service, "version": "v9.9.9"})
    conn.request("POST", "/api/v1/deployments", body=body, headers=api)
    created = json.loads(conn.getresponse().read())
    assert "id" in created, created
    deployment = created["id"]
    loads, lines = [], []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = chromium.new_page()
        page.goto(f"{url}/login")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{url}/")
        for _ in range(5):
            start = time.perf_counter()
            page.goto(f"{url}/", wait_until="load")
            loads.append((time.perf_counter() - start) * 1000)
        page.goto(f"{url}/deployments/{deployment}")
        page.wait_for_timeout(500)  # the SSE connection opens
        for i in range(5):
            body = json.dumps({"message": f"bench line {i}"})
            start = time.perf_counter()
            conn.request("POST", f"/api/v1/deployments/{deployment}/logs", body=body, headers=api)
            conn.getresponse().read()
            page.locator("#logs", has_text=f"bench line {i}").wait_for(timeout=10_000)
            lines.append((time.perf_counter() - start) * 1000)
        chromium.close()
    return {"load_ms": statistics.median(loads), "log_ms": statistics.median(lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--envs", type=int, default=100)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    results = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(
            f"sqlite:///{tmp}/bench.db",
            Path(tmp) / "data",
            args.envs,
            args.services,
            args.requests,
            browser=True,
        )
    name = f"ph_bench_dash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
        with tempfile.TemporaryDirectory() as tmp:
            results["postgres"] = measure(
                url, Path(tmp) / "data", args.envs, args.services, args.requests
            )
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    total = args.envs * args.services
    load_after = os.getloadavg()[0]
    print(f"{args.envs} environments x {args.services} services ({total:,}), ", end="")
    print(f"{args.requests} requests each\n")
    print(f"load average before: {load_before:.1f}, after: {load_after:.1f}\n")
    print("| db | request | p50 ms | p95 ms | CPU ms/request | bytes | p95 / CPU vs JSON API |")
    print("|---|---|---|---|---|---|---|")
    labels = {
        "overview": "`GET /` (first page, 50 services)",
        "per_page_200": "`GET /?per_page=200`",
        "status_filter": "`GET /?status=unhealthy`",
        "fragment": "`GET /` htmx refresh (grid only)",
        "api": f"baseline: `GET /api/v1/services` (JSON, all {total:,})",
    }
    for db, r in results.items():
        api_p95, api_cpu = r["api"][1], r["api"][3]
        for key, label in labels.items():
            p50, p95, size, cpu = r[key]
            print(
                f"| {db} | {label} | {p50:.1f} | {p95:.1f} | {cpu:.1f} | {size:,} "
                f"| {p95 / api_p95:.2f}x / {cpu / api_cpu:.2f}x |"
            )
        print(f"| {db} | seeding | {r['seed_s']:.1f} s | | | | |")
    if "browser" in results["sqlite"]:
        b = results["sqlite"]["browser"]
        print("\nIn Chromium (SQLite, medians of 5):")
        print(f"- navigation to the overview fully loaded: {b['load_ms']:.0f} ms (target < 1,000)")
        print(
            f"- a log line written until visible on its page: {b['log_ms']:.0f} ms (target < 1,000)"
        )


if __name__ == "__main__":
    main()
