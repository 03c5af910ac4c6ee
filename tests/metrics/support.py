"""Real processes for the metrics tests: the sample app and a Prometheus server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

SAMPLEAPP = Path(__file__).resolve().parents[2] / "examples" / "sampleapp.py"


def wait_until(check: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def sampleapp(**env: str) -> Iterator[int]:
    """The sample app on a free loopback port (yields the port); stopped afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SAMPLEAPP), "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200,
            what="the sample app",
        )
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def prometheus_binary() -> str:
    """Debian's prometheus (./dev test installs it); skip only outside CI when missing."""
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (./dev test installs Debian's package)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return found


@contextmanager
def prometheus(tmp: Path, targets: list[str], *, interval: str = "1s") -> Iterator[str]:
    """A Prometheus server on a free loopback port scraping `targets` (host:port) as job
    `sampleapp`; yields its base URL. Its data directory is `tmp`."""
    binary = prometheus_binary()
    port = free_port()
    config = tmp / "prometheus.yml"
    listed = ", ".join(f'"{t}"' for t in targets)
    config.write_text(
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        "  - job_name: sampleapp\n"
        f"    static_configs: [{{targets: [{listed}]}}]\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="Prometheus")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
