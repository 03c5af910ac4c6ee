"""Rollout benchmark: 10 replicas of the sample app from v1 to v2 through nginx, under load.

    ./dev bench rollout          (or .venv/bin/python bench/rollout.py)

Starts `pilothouse serve` (SQLite in a temp dir) and deploys the sample app (readiness delay
0.5 s, SAMPLE_READY_DELAY) with 10 replicas behind nginx, then, while 4 keep-alive clients send
GET / through nginx the whole time (each at most `--client-rate` requests a second, 100 by
default; 0: as fast as answered, which keeps both cores of a 2-core machine busy):
  1. rolls v1 -> v2 and reports the rollout time (deployment started_at -> completed_at) against
     the sum of the 10 new replicas' readiness times (spawn -> first passing check) measured in
     the same run (target <= 1.1x), and the failed client requests (target 0);
  2. deploys a version that never becomes ready (readiness timeout 3 s) and reports the time
     from the deploy request to the rollback's completion (target <= timeout + 2 s);
  3. stops pilothouse and its router and counts the processes they left running (target 0).
Asserts nothing; prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.engine_support import (  # noqa: E402
    Client,
    Load,
    ServerProcess,
    cleanup,
    free_port,
    started_by,
)

from pilothouse import migrations  # noqa: E402
from pilothouse.setup import _bootstrap  # noqa: E402

READY_RE = re.compile(r"replica (\w+) ready on port \d+ in ([\d.]+)s")


def seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--ready-delay", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=3.0, help="readiness timeout, seconds")
    parser.add_argument(
        "--client-rate",
        type=float,
        default=100.0,
        help="requests per second per load client at the most (0: as fast as answered)",
    )
    args = parser.parse_args()

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
        }
        server = ServerProcess(env).start()
        try:
            client = Client(server.url, token)
            port = free_port()
            client.setup_service(
                "sample",
                replicas=args.replicas,
                router_port=port,
                versions=("v1.0.0", "v2.0.0", "v3.0.0-broken"),
                timeout=args.timeout,
                driver_config={"env": {"SAMPLE_READY_DELAY": str(args.ready_delay)}},
            )
            delay = args.ready_delay
            print(f"deploying v1.0.0 on {args.replicas} replicas (readiness delay {delay}s)")
            v1 = client.wait(client.deploy("sample", "v1.0.0")["id"], timeout=300)
            assert v1["status"] == "success", v1

            with Load(port, rate=args.client_rate) as load:
                time.sleep(1.0)
                print("rolling to v2.0.0 under load")
                v2 = client.wait(client.deploy("sample", "v2.0.0")["id"], timeout=300)
                time.sleep(1.0)
            assert v2["status"] == "success", v2
            logs = client.ok("GET", f"/deployments/{v2['id']}/logs", params={"limit": 10000})[
                "items"
            ]
            ready = [float(m.group(2)) for line in logs if (m := READY_RE.search(line["message"]))]
            rollout = seconds(v2["started_at"], v2["completed_at"])
            ready_sum = sum(ready)
            # Where the time goes: from each replica's status history.
            new = [r for r in client.replicas("sample", None) if r["deployment_id"] == v2["id"]]
            marks = []
            for replica in new:
                rows = client.ok("GET", f"/history/replica/{replica['id']}")
                at = {h["to_status"]: h["changed_at"] for h in rows}
                marks.append((at["pending"], at["starting"], at["running"]))
            marks.sort()
            head = seconds(v2["started_at"], marks[0][0])
            gaps = [seconds(marks[i][2], marks[i + 1][0]) for i in range(len(marks) - 1)]
            created_to_spawned = [seconds(p, s) for p, s, _ in marks]
            tail = seconds(marks[-1][2], v2["completed_at"])

            with Load(port, rate=args.client_rate) as load_fail:
                print(f"deploying v3.0.0-broken (readiness timeout {args.timeout}s)")
                t0 = time.monotonic()
                broken = client.deploy("sample", "v3.0.0-broken")
                client.wait(broken["id"], {"rolled_back"}, timeout=120)
                to_rollback = time.monotonic() - t0
            served = client.replicas("sample")
        finally:
            server.stop()
            cleanup(data_dir)
        left = started_by(data_dir)  # what pilothouse and its router left running (issue 12.10)

    served_versions = sorted({r["version"] for r in served})
    rows = [
        (
            f"rollout v1 -> v2, {len(ready)} replicas",
            f"{rollout:.2f} s",
            f"sum of readiness times {ready_sum:.2f} s",
            f"{rollout / ready_sum:.3f}x (target <= 1.1x)",
        ),
        (
            "mean replica readiness",
            f"{ready_sum / max(len(ready), 1):.3f} s",
            f"configured delay {args.ready_delay} s",
            "-",
        ),
        (
            "client requests during rollout",
            f"{load.result.ok:,} ok, {load.result.failed} failed",
            "-",
            "target 0 failed",
        ),
        (
            "stale keep-alive connections closed by nginx reloads (retried once)",
            str(load.result.stale_retried),
            "-",
            "-",
        ),
        (
            "failing deploy: request -> rollback complete",
            f"{to_rollback:.2f} s",
            f"readiness timeout {args.timeout} s",
            f"target <= {args.timeout + 2:.1f} s",
        ),
        (
            "client requests during the failing deploy",
            f"{load_fail.result.ok:,} ok, {load_fail.result.failed} failed",
            "-",
            "target 0 failed",
        ),
        ("replicas serving after the rollback", f"{len(served)} x {served_versions}", "-", "-"),
        ("processes left behind after stop", str(len(left)), "-", "target 0"),
    ]
    print()
    print("| figure | value | baseline (same run) | ratio / target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\nwhere the rollout time goes: head {head:.3f} s (start -> first replica), "
        f"between replicas {sum(gaps):.3f} s "
        f"(mean {sum(gaps) / max(len(gaps), 1) * 1000:.0f} ms), "
        f"record -> spawn {sum(created_to_spawned):.3f} s, tail {tail:.3f} s (last ready -> done)"
    )
    if load.result.errors or load_fail.result.errors:
        print("errors:", load.result.errors + load_fail.result.errors)


if __name__ == "__main__":
    main()
