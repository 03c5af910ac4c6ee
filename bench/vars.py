"""Variables benchmark: 100 environments x 100 variables (10,000 values, a third of them secret).

    ./dev bench vars            (or .venv/bin/python bench/vars.py [--envs 100] [--vars 100])

For SQLite (temp dir) and PostgreSQL (a throwaway database on PILOTHOUSE_TEST_PG_URL), through
the service functions the engine and the API call:
  1. validate one environment before a deployment (`variables.service.for_deployment`: load,
     decrypt, feature flags, 10 requirements with format rules): p50/p95 of 500 runs, random
     environments. Target p95 < 20 ms.
  2. read and decrypt one environment's variables (`list_vars(reveal=True)`): p50/p95 of 500.
     Target p95 < 10 ms.
  3. rotate the key and re-encrypt every stored value (10,000 current + 10,000 history rows) in
     batches of 500 (`rotation.reseal_all`). Target < 10 s.
Baseline, in the same run: looking up the environment and selecting its variables' columns,
without decryption (what the database alone costs). Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa

from pilothouse import migrations
from pilothouse.access import SYSTEM, Principal
from pilothouse.core.crypto import load_keyring, rotate_key_file
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.environments.models import Environment
from pilothouse.rotation import reseal_all
from pilothouse.setup import ensure_master_key
from pilothouse.users import service as users
from pilothouse.variables import service
from pilothouse.variables.models import EnvVar

PG_ADMIN_URL = os.environ.get("PILOTHOUSE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RULES = [
    ("VAR_000", "postgres_dsn", {}),
    ("VAR_001", "https_url", {}),
    ("VAR_002", "one_of", {"values": ["DEBUG", "INFO", "WARNING", "ERROR"]}),
    ("VAR_003", "integer", {"min": 1, "max": 65535}),
    ("VAR_004", "regex", {"pattern": r"\d+:[A-Za-z0-9_-]+"}),
    ("VAR_005", "redis_url", {}),
    ("VAR_006", "semver_or_sha", {}),
    ("VAR_007", "url", {}),
    ("VAR_008", None, {}),
    ("VAR_009", None, {}),
]
VALUES = {
    "VAR_000": "postgresql://app:pw@db:5432/app",
    "VAR_001": "https://hooks.example.com/x",
    "VAR_002": "INFO",
    "VAR_003": "8080",
    "VAR_004": "123456:ABC-def_1",
    "VAR_005": "redis://cache:6379/0",
    "VAR_006": "v1.2.3",
    "VAR_007": "http://example.com",
}


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def seed(db: Database, data_dir: Path, envs: int, nvars: int) -> list[str]:
    ring = load_keyring(None, data_dir / "master.key")
    async with db.session() as session:
        user, _ = await users.bootstrap_admin(session, "bench")
        admin = Principal(id=user.id, name=user.name, role="admin")
    names = []
    for e in range(envs):
        name = f"env{e:03d}"
        names.append(name)
        async with db.session() as session:
            await environments.create_environment(
                session, admin, name=name, type="production", features={"new_ui": e % 2 == 0}
            )
            for i in range(nvars):
                key = f"VAR_{i:03d}"
                value = VALUES.get(key, f"value-{e}-{i}-{uuid.uuid4().hex}")
                await service.set_var(session, SYSTEM, ring, name, key, value, is_secret=i % 3 == 0)
            for key, rule, args in RULES:
                await service.set_requirement(session, SYSTEM, name, key, rule=rule, args=args)
    return names


async def measure(url: str, envs: int, nvars: int) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="ph-bench-vars-"))
    ensure_master_key(data_dir / "master.key")
    migrations.upgrade(url)
    db = Database(url)
    started = time.perf_counter()
    names = await seed(db, data_dir, envs, nvars)
    seeded = time.perf_counter() - started
    ring = load_keyring(None, data_dir / "master.key")
    rng = random.Random(7)
    validate, read, baseline = [], [], []
    for _ in range(500):
        name = rng.choice(names)
        t = time.perf_counter()
        async with db.session(write=False) as session:
            env = await environments.get_environment(session, SYSTEM, name)
            delivery = await service.for_deployment(session, ring, env, None)
        validate.append(time.perf_counter() - t)
        assert not delivery.problems and len(delivery.values) == nvars + 1
        t = time.perf_counter()
        async with db.session(write=False) as session:
            views = await service.list_vars(session, SYSTEM, ring, name, reveal=True)
        read.append(time.perf_counter() - t)
        assert len(views) == nvars
        t = time.perf_counter()
        async with db.session(write=False) as session:
            env_id = await session.scalar(sa.select(Environment.id).where(Environment.name == name))
            rows = (
                await session.execute(
                    sa.select(*service.LIVE_COLUMNS).where(EnvVar.environment_id == env_id)
                )
            ).all()
        baseline.append(time.perf_counter() - t)
        assert len(rows) == nvars
    rotate_key_file(data_dir / "master.key")
    ring = load_keyring(None, data_dir / "master.key")
    t = time.perf_counter()
    rewritten = await reseal_all(db, ring, batch=500)
    rotation = time.perf_counter() - t
    await db.dispose()
    return {
        "seed_s": seeded,
        "validate_p50": pct(validate, 0.5),
        "validate_p95": pct(validate, 0.95),
        "read_p50": pct(read, 0.5),
        "read_p95": pct(read, 0.95),
        "select_p95": pct(baseline, 0.95),
        "rotate_s": rotation,
        "rewritten": rewritten,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=100)
    parser.add_argument("--vars", type=int, default=100)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = asyncio.run(measure(f"sqlite:///{tmp}/bench.db", args.envs, args.vars))
    name = f"ph_bench_vars_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
        results["postgres"] = asyncio.run(measure(url, args.envs, args.vars))
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{args.envs} environments x {args.vars} variables\n")
    print(
        "| db | validate p50 ms | validate p95 ms | read+decrypt p50 ms | read+decrypt p95 ms "
        "| bare SELECT p95 ms | rotate s (values) | seed s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for db, r in results.items():
        print(
            f"| {db} | {r['validate_p50']:.2f} | {r['validate_p95']:.2f} | {r['read_p50']:.2f} | "
            f"{r['read_p95']:.2f} | {r['select_p95']:.2f} | {r['rotate_s']:.2f} "
            f"({int(r['rewritten']):,}) | {r['seed_s']:.1f} |"
        )
    print("\ntargets: validate p95 < 20 ms, read p95 < 10 ms, rotation < 10 s")


if __name__ == "__main__":
    main()
