"""Container benchmark: 10 container replicas rolled from one image to another through nginx
under load, and the driver's cost per replica start against a bare `podman run`.

    ./dev bench containers          (or .venv/bin/python bench/containers.py)

Builds (or finds, cached) the sample image (tests/container_image.py), starts `pilothouse serve`
(SQLite in a temp dir) with a `container` environment and the sample app (readiness delay 0.5 s)
on 10 replicas behind nginx, then:
  1. rolls image 1 -> image 2 while 4 keep-alive clients send GET / through nginx, and reports
     the rollout time (deployment started_at -> completed_at) against the sum of the 10 new
     replicas' readiness times (container started -> first passing check) measured in the same
     run (target <= 1.1x) and the failed client requests (target 0);
  2. times one replica start through the driver (a scale by one without load, replica recorded
     -> running from its status history: env-file, `run`, log follower, `inspect`, readiness)
     against a bare `podman run -d` of the same image with the same limits followed by the same
     readiness polling, alternating, `--starts` times each, while the 10 replicas run
     (target <= 1.2x); the first starts of the rollout (under load) are shown beside them.
The node's capacity is overridden (PILOTHOUSE_NODE_CAPACITY) so 10 replicas of 0.5 CPU fit on a
2-core machine. Asserts nothing; prints figures.

With `--profile`, every engine command pilothouse runs goes through a recording `podman` wrapper
(PILOTHOUSE_CONTAINER_ENGINE; `/usr/bin/time` per call, a few ms each) and the bench prints,
per subcommand, how many calls the rollout made, their wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import container_image  # noqa: E402
from tests.conftest import SHA  # noqa: E402
from tests.engine_support import Client, Load, ServerProcess, cleanup, free_port  # noqa: E402

from pilothouse import migrations  # noqa: E402
from pilothouse.setup import _bootstrap  # noqa: E402

READY_RE = re.compile(r"replica (\w+) \(container \w+\) ready on port \d+ in ([\d.]+)s")


def seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def epoch(text: str) -> float:
    """An API timestamp (UTC, with or without its offset) as seconds since the epoch."""
    at = datetime.fromisoformat(text)
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def bare_start(image: str, delay: float) -> float:
    """`podman run -d` with the driver's limits, then readiness polling every 0.05 s; seconds."""
    port = free_port()
    started = time.monotonic()
    done = container_image.podman(
        "run",
        "--detach",
        "--label",
        "pilothouse.bench=1",
        "--publish",
        f"127.0.0.1:{port}:8000",
        "--cpus",
        "0.5",
        "--memory",
        "512m",
        "--memory-swap",
        "512m",
        "--env",
        f"SAMPLE_READY_DELAY={delay}",
        image,
    )
    cid = done.stdout.strip()
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    finally:
        container_image.podman("rm", "-f", "-t", "0", cid, check=False)


WRAPPER = """#!/bin/sh
# Records every engine call: start, wall, user and system seconds, subcommand (bench --profile).
s=$(date +%s.%N)
exec /usr/bin/time -a -o {log} -f "$s %e %U %S $1 $2" {engine} "$@"
"""


def profiling_engine(folder: Path) -> tuple[Path, Path]:
    """A `podman` wrapper (the driver writes its containers.conf for an engine named podman)
    that appends one line per call to the returned log."""
    engine = shutil.which("podman")
    assert engine, "podman is not installed"
    log = folder / "engine-calls.log"
    wrapper = folder / "bin" / "podman"
    wrapper.parent.mkdir()
    wrapper.write_text(WRAPPER.format(log=log, engine=engine))
    wrapper.chmod(0o755)
    return wrapper, log


def subcommand(first: str, second: str) -> str:
    """`container inspect`, `image inspect`; else the first word (`run`, `stop`, `rm`...)."""
    return f"{first} {second}" if first in ("container", "image") else first


def profile_rows(log: Path, start: float, end: float) -> list[tuple[str, int, float, float]]:
    """(subcommand, calls, wall seconds, cpu seconds) of the calls begun in [start, end]."""
    totals: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) < 5 or not re.fullmatch(r"[\d.]+", parts[0]):
            continue  # a "Command exited with non-zero status" line of /usr/bin/time
        begun, wall, user, system = (float(x) for x in parts[:4])
        if not start <= begun <= end:
            continue
        name = subcommand(parts[4], parts[5] if len(parts) > 5 else "")
        row = totals.setdefault(name, [0, 0.0, 0.0])
        row[0] += 1
        row[1] += wall
        row[2] += user + system
    return sorted(((k, int(v[0]), v[1], v[2]) for k, v in totals.items()), key=lambda r: -r[2])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--ready-delay", type=float, default=0.5)
    parser.add_argument("--starts", type=int, default=5, help="single starts timed each way")
    parser.add_argument(
        "--profile", action="store_true", help="record and break down every engine call"
    )
    args = parser.parse_args()

    (ref1, digest1), (ref2, digest2) = container_image.image("1"), container_image.image("2")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        url = f"sqlite:///{tmp}/bench.db"
        migrations.upgrade(url)
        token = asyncio.run(_bootstrap(url, "bench"))
        assert token
        env = {
            **os.environ,
            "PILOTHOUSE_DATA_DIR": str(data_dir),
            "PILOTHOUSE_DATABASE_URL": url,
            "PILOTHOUSE_TEST_MARK": str(data_dir),
            "PILOTHOUSE_NODE_CAPACITY": json.dumps({"cpu_cores": 64, "memory_mb": 65536}),
        }
        calls_log = None
        if args.profile:
            wrapper, calls_log = profiling_engine(Path(tmp))
            env["PILOTHOUSE_CONTAINER_ENGINE"] = str(wrapper)
        server = ServerProcess(env).start()
        service_id = None
        try:
            client = Client(server.url, token)
            port = free_port()
            client.ok("POST", "/environments", 201, json={"name": "ctr", "driver": "container"})
            svc = client.ok(
                "POST",
                "/services",
                201,
                json={
                    "environment": "ctr",
                    "name": "sample",
                    "image": ref1,
                    "target_replicas": args.replicas,
                    "driver_config": {
                        "router": "nginx",
                        "router_port": port,
                        "env": {"SAMPLE_READY_DELAY": str(args.ready_delay)},
                    },
                    "health_check": {"path": "/health", "timeout": 30, "interval": 0.05},
                },
            )
            service_id = svc["id"]
            for version, ref, digest in (("v1", ref1, digest1), ("v2", ref2, digest2)):
                client.ok(
                    "POST",
                    "/artifacts",
                    201,
                    json={
                        "service": svc["id"],
                        "version": version,
                        "commit_sha": SHA,
                        "image_uri": ref,
                        "image_digest": digest,
                    },
                )
            print(f"deploying image 1 on {args.replicas} container replicas")
            v1 = client.wait(client.deploy("sample", "v1")["id"], timeout=300)
            assert v1["status"] == "success", v1
            with Load(port) as load:
                time.sleep(1.0)
                print("rolling to image 2 under load")
                v2 = client.wait(client.deploy("sample", "v2")["id"], timeout=300)
                time.sleep(1.0)
            assert v2["status"] == "success", v2
            logs = client.ok("GET", f"/deployments/{v2['id']}/logs", params={"limit": 10000})
            ready = [
                float(m.group(2))
                for line in logs["items"]
                if (m := READY_RE.search(line["message"]))
            ]
            rollout = seconds(v2["started_at"], v2["completed_at"])
            new = [r for r in client.replicas("sample", None) if r["deployment_id"] == v2["id"]]
            marks = []
            for replica in new:
                rows = client.ok("GET", f"/history/replica/{replica['id']}")
                at = {h["to_status"]: h["changed_at"] for h in rows}
                marks.append((at["pending"], at["starting"], at["running"]))
            marks.sort()
            driver_starts = [seconds(p, r) for p, _, r in marks[: args.starts]]
            head = seconds(v2["started_at"], marks[0][0])
            gaps = [seconds(marks[i][2], marks[i + 1][0]) for i in range(len(marks) - 1)]
            to_starting = [seconds(p, st) for p, st, _ in marks]
            tail = seconds(marks[-1][2], v2["completed_at"])
            # One start at a time without load, alternating with bare `podman run`s of the same
            # image, while the 10 replicas keep running (same conditions for both).
            print(f"timing {args.starts} single starts each way (scale +1 / bare podman run)")
            bare: list[float] = []
            scaled: list[float] = []
            for i in range(args.starts):
                bare.append(bare_start(ref2, args.ready_delay))
                scale = client.ok(
                    "POST",
                    "/services/sample/scale",
                    200,
                    json={"target_replicas": args.replicas + i + 1},
                )
                done = client.wait(scale["deployment_id"], timeout=120)
                assert done["status"] == "success", done
                (added,) = [
                    r for r in client.replicas("sample", None) if r["deployment_id"] == done["id"]
                ]
                rows = client.ok("GET", f"/history/replica/{added['id']}")
                at = {h["to_status"]: h["changed_at"] for h in rows}
                scaled.append(seconds(at["pending"], at["running"]))
            stop = client.ok("POST", "/services/sample/stop", 202, json={})
            client.wait(stop["deployment_id"], timeout=120)
        finally:
            server.stop()
            cleanup(data_dir)
            if service_id:
                ids = container_image.podman(
                    "ps", "-aq", "--filter", f"label=pilothouse.service={service_id}", check=False
                ).stdout.split()
                if ids:
                    container_image.podman("rm", "-f", "-t", "0", *ids, check=False)
        # After the stop: a log follower's line is written when it ends (with its container).
        window = (epoch(v2["started_at"]), epoch(v2["completed_at"]))
        profile = profile_rows(calls_log, *window) if calls_log else []

    ready_sum = sum(ready)
    driver_mean, bare_mean = statistics.mean(scaled), statistics.mean(bare)
    under_load = statistics.mean(driver_starts)
    rows = [
        (
            f"rollout image 1 -> 2, {len(ready)} container replicas",
            f"{rollout:.2f} s",
            f"sum of readiness times {ready_sum:.2f} s",
            f"{rollout / ready_sum:.3f}x (target <= 1.1x)",
        ),
        (
            "client requests during rollout",
            f"{load.result.ok:,} ok, {load.result.failed} failed",
            "-",
            "target 0 failed",
        ),
        (
            "one replica start, scale +1 (recorded -> running)",
            f"{driver_mean:.3f} s (mean of {len(scaled)})",
            f"bare podman run + readiness {bare_mean:.3f} s (mean of {len(bare)})",
            f"{driver_mean / bare_mean:.3f}x (target <= 1.2x)",
        ),
        (
            "one replica start in the rollout, under load (recorded -> running)",
            f"{under_load:.3f} s (mean of first {len(driver_starts)})",
            "-",
            f"{under_load / bare_mean:.3f}x of the bare start (no load)",
        ),
    ]
    print()
    print("| figure | value | baseline (same run) | ratio / target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\nwhere the rollout time goes: head {head:.3f} s (start -> first replica recorded), "
        f"between replicas {sum(gaps):.3f} s (one ready -> next recorded), "
        f"recorded -> container started {sum(to_starting):.3f} s "
        f"(mean {statistics.mean(to_starting):.3f} s), tail {tail:.3f} s"
    )
    if profile:
        print(
            f"\nengine calls begun during the rollout ({rollout:.2f} s; a `logs --follow` "
            "counts its whole life, until its container was removed):"
        )
        print("| subcommand | calls | wall s (sum) | cpu s (sum, user+sys) |")
        print("|---|---|---|---|")
        for name, count, wall, cpu in profile:
            print(f"| {name} | {count} | {wall:.2f} | {cpu:.2f} |")
        print(
            f"| all | {sum(r[1] for r in profile)} | {sum(r[2] for r in profile):.2f} | "
            f"{sum(r[3] for r in profile):.2f} |"
        )
    if load.result.errors:
        print("errors:", load.result.errors)


if __name__ == "__main__":
    main()
