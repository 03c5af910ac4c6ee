"""Scrape benchmark: 500 targets x 100 series, pilothouse's scraper against Prometheus.

    ./dev bench scrape          (or .venv/bin/python bench/scrape.py [--targets N --series M])

One local server (a separate process, not measured) answers `/t/<i>/metrics` with M series in
the Prometheus text format (counters, gauges and a histogram, labelled like an app's). In the
same run, against the same targets:
  1. pilothouse's scraper (metrics/scrape.py `scrape`: fetch with httpx, parse with
     prometheus_client's parser, write the samples to the embedded store on SQLite through
     `write_samples`, keep the replica figures), `--rounds` rounds back to back;
  2. Debian's Prometheus scraping the same URLs every `--interval` s for `--duration` s (its
     own TSDB), samples counted from `prometheus_tsdb_head_samples_appended_total`.
Reports CPU seconds per 1,000 samples (user + system of the measuring process for pilothouse,
of the prometheus process for Prometheus) and their ratio. Target: within 2x (goal 1x).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from pilothouse import migrations
from pilothouse.core.db import Database
from pilothouse.metrics import scrape

TARGET_SERVER = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    SERIES = int(sys.argv[2])

    TICKS = {}

    def exposition(seed):
        # Every request moves the values on (counters count, gauges change), as a live app's
        # do: the lines stay, the values differ from one scrape to the next.
        tick = TICKS[seed] = TICKS.get(seed, 0) + 1
        lines = ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
        n = 0
        for path in ("/", "/api", "/login", "/search", "/cart"):
            for code in ("200", "404", "500"):
                if n < SERIES // 2:
                    labels = f'path="{path}",code="{code}"'
                    lines.append(f"http_requests_total{{{labels}}} {seed * 7 + n + tick * 3}")
                    n += 1
        lines += ["# HELP queue_depth Items waiting.", "# TYPE queue_depth gauge"]
        i = 0
        while n < SERIES:
            lines.append(f'queue_depth{{queue="q{i}",shard="{i % 4}"}} {seed + i + tick % 7}.5')
            n += 1
            i += 1
        return ("\\n".join(lines) + "\\n").encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seed = int(self.path.split("/")[2])
            body = exposition(seed)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024
        daemon_threads = True

    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def run_pilothouse(port: int, targets: int, rounds: int, tmp: Path) -> dict[str, float]:
    url = f"sqlite:///{tmp}/scrape.db"
    migrations.upgrade(url)
    db = Database(url)
    service_id = uuid.uuid4()
    listed = [
        scrape.Target(
            replica_id=uuid.uuid4(),
            service_id=service_id,
            url=f"http://127.0.0.1:{port}/t/{i}/metrics",
            interval=15.0,
            timeout=10.0,
            tags={"environment": "bench", "service": f"s{i % 50}", "replica": str(i)},
        )
        for i in range(targets)
    ]
    # A first round creates the series (a one-off); the rounds measured find them.
    first_cpu, first = cpu_seconds(psutil.Process()), time.perf_counter()
    await scrape.scrape(db, listed)
    first_round = {
        "cpu": cpu_seconds(psutil.Process()) - first_cpu,
        "wall": time.perf_counter() - first,
    }
    me = psutil.Process()
    start_cpu, start = cpu_seconds(me), time.perf_counter()
    samples = 0
    for _ in range(rounds):
        outcomes = await scrape.scrape(db, listed)
        samples += sum(len(o.samples) + 3 for o in outcomes)
        down = [o.detail for o in outcomes if not o.up]
        if down:
            print(f"  {len(down)} targets down, e.g. {down[0]}")
    used, wall = cpu_seconds(me) - start_cpu, time.perf_counter() - start
    await db.dispose()
    return {
        "samples": samples,
        "cpu": used,
        "wall": wall,
        "first_cpu": first_round["cpu"],
        "first_wall": first_round["wall"],
    }


def run_prometheus(
    port: int, targets: int, interval: float, duration: float, tmp: Path
) -> dict[str, float]:
    prom_port = free_port()
    configs = "\n".join(
        f"      - targets: ['127.0.0.1:{port}']\n"
        f"        labels: {{__metrics_path__: /t/{i}/metrics, replica: '{i}'}}"
        for i in range(targets)
    )
    (tmp / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {int(interval)}s\n  scrape_timeout: 10s\n"
        f"scrape_configs:\n  - job_name: apps\n    static_configs:\n{configs}\n"
    )
    prometheus = subprocess.Popen(
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={tmp}/prometheus.yml",
            f"--storage.tsdb.path={tmp}/tsdb",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def appended() -> float:
        """Samples Prometheus has appended, from its own /metrics (it does not scrape itself)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/metrics") as r:
            text = r.read().decode()
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "prometheus_tsdb_head_samples_appended_total"
        )

    try:
        wait_port(prom_port, timeout=60)
        time.sleep(interval)  # let it load the targets and make its first round
        proc = psutil.Process(prometheus.pid)
        start_cpu, start_samples = cpu_seconds(proc), appended()
        time.sleep(duration)
        used = cpu_seconds(proc) - start_cpu
        samples = appended() - start_samples
    finally:
        prometheus.terminate()
        prometheus.wait(30)
    return {"samples": samples, "cpu": used}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--duration", type=float, default=90.0)
    args = parser.parse_args()
    if shutil.which("prometheus") is None:
        sys.exit("prometheus is not installed (apt-get install prometheus)")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        port = free_port()
        (tmp / "targets.py").write_text(TARGET_SERVER)
        server = subprocess.Popen(
            [sys.executable, str(tmp / "targets.py"), str(port), str(args.series)]
        )
        try:
            wait_port(port)
            print(
                f"pilothouse: {args.targets} targets x {args.series} series, {args.rounds} rounds"
            )
            ours = asyncio.run(run_pilothouse(port, args.targets, args.rounds, tmp))
            print(f"prometheus: the same targets every {args.interval:g}s for {args.duration:g}s")
            theirs = run_prometheus(port, args.targets, args.interval, args.duration, tmp)
        finally:
            server.terminate()
            server.wait(10)
    ours_per_k = ours["cpu"] / max(ours["samples"], 1) * 1000
    theirs_per_k = theirs["cpu"] / max(theirs["samples"], 1) * 1000
    print()
    print("| figure | pilothouse | prometheus | ratio / target |")
    print("|---|---|---|---|")
    print(f"| samples scraped | {ours['samples']:,.0f} | {theirs['samples']:,.0f} | - |")
    print(f"| CPU seconds | {ours['cpu']:.2f} | {theirs['cpu']:.2f} | - |")
    print(
        f"| CPU seconds per 1,000 samples | {ours_per_k:.4f} | {theirs_per_k:.4f} | "
        f"{ours_per_k / max(theirs_per_k, 1e-9):.1f}x (target <= 2x, goal 1x) |"
    )
    print(
        f"| first round, creating the {ours['samples'] / args.rounds:,.0f} series (CPU / wall) | "
        f"{ours['first_cpu']:.2f} s / {ours['first_wall']:.2f} s | - | one-off |"
    )
    print(
        f"| one round of {args.targets} targets (wall) | "
        f"{ours['wall'] / args.rounds:.2f} s | - | must fit the {args.interval:g} s interval |"
    )


if __name__ == "__main__":
    main()
