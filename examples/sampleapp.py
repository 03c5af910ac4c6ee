#!/usr/bin/env python3
"""A tiny web app for trying pilothouse: one file, standard library only.

    python examples/sampleapp.py --port 8000          # version from PILOTHOUSE_VERSION

Endpoints: `/` (hello, version, pid), `/health` (200 once ready, else 503), `/version`,
`/burn?seconds=N` (burns CPU for N seconds, at most 30), `/alloc?mb=N` (keeps N more MB of
memory in use, at most 4096: for memory limit tests), `/metrics` (request and error counters,
mean request duration since the last scrape, in the Prometheus text format), `/errors?rate=R` (from now on, answer that share of requests to
`/` with HTTP 500; `rate=0` stops it), `/fail` (always HTTP 500).

Behaviour is chosen by variables, or by words in the version it is started as:
  SAMPLE_READY_DELAY=S     /health answers 503 for S seconds after start   (version contains "slow": 5 s)
  SAMPLE_FAIL_READINESS=1  /health always answers 503                      (version contains "broken")
  SAMPLE_CRASH_ON_START=1  exit with status 3 before listening              (version contains "crash")
  SAMPLE_UNHEALTHY_AFTER=S /health turns 503 S seconds after start        (version contains "fading": 1 s)
  SAMPLE_ERROR_RATE=R      answer that share (0-1) of requests to `/` with 500 (version "errors": 1)
SIGTERM stops accepting new connections, finishes requests in flight, and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

#: Paths counted under their own name in /metrics (anything else counts as "other").
KNOWN = ("/", "/health", "/version", "/burn", "/alloc", "/errors", "/fail")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def main() -> None:
    parser = argparse.ArgumentParser(description="pilothouse sample app")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--version", default=os.environ.get("PILOTHOUSE_VERSION", "dev"))
    args = parser.parse_args()
    version = args.version

    if _flag("SAMPLE_CRASH_ON_START") or "crash" in version:
        print(f"sampleapp {version}: crashing on start as asked", flush=True)
        sys.exit(3)
    delay = float(os.environ.get("SAMPLE_READY_DELAY", "5" if "slow" in version else "0"))
    never_ready = _flag("SAMPLE_FAIL_READINESS") or "broken" in version
    started = time.monotonic()
    ready_at = started + delay
    fade = os.environ.get("SAMPLE_UNHEALTHY_AFTER", "1" if "fading" in version else "")
    unhealthy_at = started + float(fade) if fade else float("inf")
    start_time = time.time()
    lock = threading.Lock()
    # Counters for /metrics: requests by path and status code, connections being served.
    requests: dict[tuple[str, int], int] = {}
    state = {
        "error_rate": float(
            os.environ.get("SAMPLE_ERROR_RATE", "1" if "errors" in version else "0")
        ),
        "served": 0,
        "active": 0,
    }
    held: list[bytes] = []  # what /alloc keeps in use
    # Durations (ms) of the requests answered since the last scrape of /metrics.
    durations: list[float] = []

    def count(path: str, status: int, ms: float) -> None:
        with lock:
            requests[(path, status)] = requests.get((path, status), 0) + 1
            durations.append(ms)

    def should_fail() -> bool:
        # A deterministic, evenly spread share: request n fails when n * rate crosses an integer.
        with lock:
            state["served"] += 1
            n, rate = state["served"], state["error_rate"]
            return int(n * rate) > int((n - 1) * rate)

    def exposition() -> str:
        """The counters in the Prometheus text format (written by hand: stdlib only)."""
        with lock:
            counted = sorted(requests.items())
            active = state["active"]
            recent = list(durations)
            durations.clear()
        lines = [
            "# HELP http_requests_total Requests answered, by path and status code.",
            "# TYPE http_requests_total counter",
        ]
        for (path, status), n in counted:
            lines.append(f'http_requests_total{{path="{path}",code="{status}"}} {n}')
        errors = sum(n for (_p, status), n in counted if status >= 500)
        lines += [
            "# HELP http_request_errors_total Requests answered with a 5xx status.",
            "# TYPE http_request_errors_total counter",
            f"http_request_errors_total {errors}",
            "# HELP http_active_connections Requests being served now.",
            "# TYPE http_active_connections gauge",
            f"http_active_connections {active}",
        ]
        if recent:  # no request since the last scrape: no figure
            lines += [
                "# HELP http_request_duration_ms Mean duration of the requests answered since "
                "the last scrape.",
                "# TYPE http_request_duration_ms gauge",
                f"http_request_duration_ms {sum(recent) / len(recent):.3f}",
            ]
        lines += [
            "# HELP process_start_time_seconds Start time of the process since the epoch.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {start_time:.3f}",
        ]
        return "\n".join(lines) + "\n"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY each keep-alive request
        # waits for the client's delayed ACK (~40 ms).
        disable_nagle_algorithm = True

        def _send(self, status: int, body: dict[str, object]) -> None:
            self._reply(status, json.dumps(body).encode(), "application/json")

        def _reply(self, status: int, data: bytes, content_type: str) -> None:
            path = urlparse(self.path).path
            if path != "/metrics":  # a scrape is not a request of the app's users
                ms = (time.perf_counter() - self.began) * 1000
                count(path if path in KNOWN else "other", status, ms)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.began = time.perf_counter()
            with lock:
                state["active"] += 1
            try:
                self._get()
            finally:
                with lock:
                    state["active"] -= 1

        def _get(self) -> None:
            url = urlparse(self.path)
            if url.path == "/metrics":
                self._reply(200, exposition().encode(), "text/plain; version=0.0.4")
            elif url.path == "/errors":
                rate = min(max(float(parse_qs(url.query).get("rate", ["1"])[0]), 0.0), 1.0)
                with lock:
                    state["error_rate"], state["served"] = rate, 0
                self._send(200, {"error_rate": rate})
            elif url.path == "/fail":
                self._send(500, {"error": "failing as asked"})
            elif url.path == "/health":
                now = time.monotonic()
                ready = not never_ready and ready_at <= now < unhealthy_at
                self._send(
                    200 if ready else 503,
                    {"status": "ok" if ready else "starting", "version": version},
                )
            elif url.path.startswith("/env/"):
                # A digest, not the value: tests check what the app received without the
                # value leaving the process.
                value = os.environ.get(url.path[5:])
                digest = hashlib.sha256(value.encode()).hexdigest() if value is not None else None
                self._send(200, {"key": url.path[5:], "sha256": digest})
            elif url.path == "/version":
                self._send(200, {"version": version})
            elif url.path == "/burn":
                seconds = min(float(parse_qs(url.query).get("seconds", ["1"])[0]), 30.0)
                end = time.monotonic() + seconds
                n = 0
                while time.monotonic() < end:
                    n += 1
                self._send(200, {"burned_seconds": seconds, "loops": n})
            elif url.path == "/alloc":
                mb = min(int(parse_qs(url.query).get("mb", ["1"])[0]), 4096)
                for _ in range(mb):
                    held.append(b"\x01" * (1024 * 1024))  # written, so resident
                self._send(200, {"held_mb": len(held)})
            elif url.path == "/" and should_fail():
                self._send(500, {"error": "failing as asked", "version": version})
            elif url.path == "/":
                self._send(
                    200,
                    {
                        "hello": "from the pilothouse sample app",
                        "version": version,
                        "pid": os.getpid(),
                    },
                )
            else:
                self._send(404, {"error": "not found"})

        def log_message(self, fmt: str, *fmt_args: object) -> None:
            print(f"{self.address_string()} {fmt % fmt_args}", flush=True)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = False  # finish requests in flight on shutdown
    server.block_on_close = True

    def stop(signum: int, _frame: object) -> None:
        print(f"sampleapp {version}: signal {signum}, draining", flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if _flag("SAMPLE_PRINT_ENV"):  # a careless app: pilothouse must scrub its output
        for key, value in sorted(os.environ.items()):
            print(f"env {key}={value}", flush=True)
    print(
        f"sampleapp {version} listening on {args.host}:{args.port} (ready in {delay:g}s)",
        flush=True,
    )
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    print(f"sampleapp {version}: stopped", flush=True)


if __name__ == "__main__":
    main()
