#!/usr/bin/env python3
"""A tiny web app for trying pilothouse: one file, standard library only.

    python examples/sampleapp.py --port 8000          # version from PILOTHOUSE_VERSION

Endpoints: `/` (hello, version, pid), `/health` (200 once ready, else 503), `/version`,
`/burn?seconds=N` (burns CPU for N seconds, at most 30).

Behaviour is chosen by variables, or by words in the version it is started as:
  SAMPLE_READY_DELAY=S     /health answers 503 for S seconds after start   (version contains "slow": 5 s)
  SAMPLE_FAIL_READINESS=1  /health always answers 503                      (version contains "broken")
  SAMPLE_CRASH_ON_START=1  exit with status 3 before listening              (version contains "crash")
  SAMPLE_UNHEALTHY_AFTER=S /health turns 503 S seconds after start        (version contains "fading": 1 s)
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

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            url = urlparse(self.path)
            if url.path == "/health":
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
