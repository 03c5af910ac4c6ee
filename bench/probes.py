"""Probe benchmark: 2,000 HTTP targets on loopback, probed every 30 s for 3 minutes.

    ./dev bench probes          (or .venv/bin/python bench/probes.py)

One local server (a separate process) answers on 2,000 paths. In the same run, against the same
targets:
  1. pilothouse's health monitor: 2,000 services whose public URL is one path each, checked
     every 30 s (SQLite store, results recorded, health derived and damped as in production);
  2. Prometheus scraping blackbox_exporter's http_2xx module for the same 2,000 URLs every 30 s
     (Debian's prometheus and prometheus-blackbox-exporter, started here with their own config).
Reports the monitor's schedule lag p99 (how late each probe starts against its slot) and
CPU-seconds per 1,000 probes for pilothouse and for the Prometheus + blackbox_exporter pair
(both processes' user + system time). Targets: lag p99 < 1 s; CPU per probe <= 2x the pair.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

from pilothouse import migrations
from pilothouse.access import Principal
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.healthchecks.monitor import Monitor, MonitorSettings
from pilothouse.services import service as services
from pilothouse.users import service as users

TARGET_SERVER = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # listen() backlog: must be set before the socket listens
        daemon_threads = True

    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


async def run_pilothouse(
    urls: list[str], interval: float, duration: float, tmp: Path
) -> dict[str, float]:
    url = f"sqlite:///{tmp}/probes.db"
    migrations.upgrade(url)
    db = Database(url)
    async with db.session() as session:
        user, _ = await users.bootstrap_admin(session, "bench")
        admin = Principal(user.id, "bench", "admin")
        await environments.create_environment(session, admin, name="bench")
        for i, target in enumerate(urls):
            svc = await services.create_service(
                session,
                admin,
                environment="bench",
                name=f"t{i}",
                resources={},
                public_url=target,
                health_check={"interval": interval},
            )
            svc.status = "running"
    monitor = Monitor(db, MonitorSettings(concurrency=200))
    me = psutil.Process()
    start_cpu, start = cpu_seconds([me]), time.time()
    while time.time() - start < duration:
        await monitor.tick(time.time())
        await asyncio.sleep(monitor.settings.tick)
    await asyncio.gather(*monitor.tasks)
    await monitor.flush()
    used = cpu_seconds([me]) - start_cpu
    lags = sorted(monitor.lags)
    await db.dispose()
    return {
        "probes": monitor.probed,
        "cpu": used,
        "lag_p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
        "lag_p50": lags[len(lags) // 2] if lags else 0.0,
    }


def run_prometheus(
    urls: list[str], interval: float, duration: float, tmp: Path
) -> dict[str, float]:
    bb_port, prom_port = free_port(), free_port()
    (tmp / "blackbox.yml").write_text("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
    targets = "\n".join(f"          - {u}" for u in urls)
    (tmp / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {int(interval)}s\n  scrape_timeout: 10s\n"
        "scrape_configs:\n  - job_name: blackbox\n    metrics_path: /probe\n"
        "    params:\n      module: [http_2xx]\n    static_configs:\n      - targets:\n"
        f"{targets}\n"
        "    relabel_configs:\n"
        "      - source_labels: [__address__]\n        target_label: __param_target\n"
        "      - source_labels: [__param_target]\n        target_label: instance\n"
        f"      - target_label: __address__\n        replacement: 127.0.0.1:{bb_port}\n"
    )
    blackbox = subprocess.Popen(
        [
            shutil.which("prometheus-blackbox-exporter") or "prometheus-blackbox-exporter",
            f"--config.file={tmp}/blackbox.yml",
            f"--web.listen-address=127.0.0.1:{bb_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
    try:
        wait_port(bb_port, timeout=60)
        wait_port(prom_port, timeout=60)
        procs = [psutil.Process(blackbox.pid), psutil.Process(prometheus.pid)]
        start_cpu = cpu_seconds(procs)
        time.sleep(duration)
        used = cpu_seconds(procs) - start_cpu
        query = urllib.parse.quote(f"sum(count_over_time(probe_success[{int(duration) + 30}s]))")
        with urllib.request.urlopen(
            f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}"
        ) as r:
            result = json.load(r)["data"]["result"]
        probes = float(result[0]["value"][1]) if result else 0.0
    finally:
        for proc in (prometheus, blackbox):
            proc.terminate()
            proc.wait(20)
    return {"probes": probes, "cpu": used}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--duration", type=float, default=180.0)
    args = parser.parse_args()
    for binary in ("prometheus", "prometheus-blackbox-exporter"):
        if shutil.which(binary) is None:
            sys.exit(
                f"{binary} is not installed "
                "(apt-get install prometheus prometheus-blackbox-exporter)"
            )
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        port = free_port()
        (tmp / "targets.py").write_text(TARGET_SERVER)
        server = subprocess.Popen([sys.executable, str(tmp / "targets.py"), str(port)])
        try:
            wait_port(port)
            urls = [f"http://127.0.0.1:{port}/t/{i}" for i in range(args.targets)]
            print(
                f"pilothouse: {args.targets} targets every {args.interval:g}s "
                f"for {args.duration:g}s"
            )
            ours = asyncio.run(run_pilothouse(urls, args.interval, args.duration, tmp))
            print(f"prometheus + blackbox_exporter: the same targets for {args.duration:g}s")
            theirs = run_prometheus(urls, args.interval, args.duration, tmp)
        finally:
            server.terminate()
            server.wait(10)
    ours_per_k = ours["cpu"] / max(ours["probes"], 1) * 1000
    theirs_per_k = theirs["cpu"] / max(theirs["probes"], 1) * 1000
    print()
    print("| figure | pilothouse | prometheus + blackbox_exporter | ratio / target |")
    print("|---|---|---|---|")
    print(f"| probes run | {ours['probes']:,.0f} | {theirs['probes']:,.0f} | - |")
    print(f"| CPU seconds | {ours['cpu']:.2f} | {theirs['cpu']:.2f} | - |")
    print(
        f"| CPU-seconds per 1,000 probes | {ours_per_k:.3f} | {theirs_per_k:.3f} | "
        f"{ours_per_k / theirs_per_k:.2f}x (target <= 2x) |"
    )
    print(
        f"| schedule lag p50 / p99 | {ours['lag_p50']:.3f} s / {ours['lag_p99']:.3f} s | - | "
        "p99 target < 1 s |"
    )


if __name__ == "__main__":
    main()
