"""Network probes (core/probes.py) against real local servers: HTTP(S), TCP, PostgreSQL, a
dedicated redis-server, TLS."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from pilothouse.core.probes import (
    http_probe,
    json_path,
    postgres_probe,
    redis_probe,
    tcp_probe,
    tls_probe,
)
from tests.conftest import PG_ADMIN_URL, free_port


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(0.3)
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b'{"status": ', b'"ok"}'):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        status = 500 if self.path == "/fail" else 200
        body = json.dumps(
            {"status": "ok", "checks": {"db": {"status": "up"}}, "items": [1, 2]}
        ).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def certs() -> trustme.CA:
    return trustme.CA()


def _serve(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    yield from _serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


@pytest.fixture(scope="module")
def https_port(certs: trustme.CA) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certs.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


async def test_http_probe_conditions(http_port: int) -> None:
    base = f"http://127.0.0.1:{http_port}"
    ok = await http_probe(f"{base}/health")
    assert ok.ok and ok.status_code == 200 and ok.latency_ms is not None
    assert not (await http_probe(f"{base}/fail")).ok
    assert (await http_probe(f"{base}/fail", expect_status=(500,))).ok
    slow = await http_probe(f"{base}/slow", latency_limit_ms=100)
    assert not slow.ok and slow.detail.startswith("slow")
    timeout = await http_probe(f"{base}/slow", timeout=0.1)
    assert not timeout.ok and "timeout" in timeout.detail
    assert (await http_probe(f"{base}/", body_contains='"ok"')).ok
    assert not (await http_probe(f"{base}/", body_contains="nope")).ok
    assert (await http_probe(f"{base}/", json_equals={"checks.db.status": "up", "items.1": 2})).ok
    wrong = await http_probe(f"{base}/", json_equals={"checks.db.status": "down"})
    assert not wrong.ok and "not 'down'" in wrong.detail
    assert (await http_probe(f"{base}/chunked", json_equals={"status": "ok"})).ok
    refused = await http_probe(f"http://127.0.0.1:{free_port()}/")
    assert not refused.ok and "connect failed" in refused.detail


async def test_https_and_tls_probes(https_port: int, certs: trustme.CA) -> None:
    trusted = ssl.create_default_context()
    certs.configure_trust(trusted)
    url = f"https://localhost:{https_port}/health"
    assert (await http_probe(url, ssl_context=trusted)).ok
    assert not (await http_probe(url)).ok  # the system store does not trust our CA
    tls = await tls_probe("127.0.0.1", https_port, server_name="localhost", ssl_context=trusted)
    assert tls.ok and tls.extra["days_left"] > 300
    untrusted = await tls_probe("127.0.0.1", https_port, server_name="localhost")
    assert not untrusted.ok and "not trusted" in untrusted.detail


async def test_tcp_and_postgres_probes(http_port: int) -> None:
    assert (await tcp_probe("127.0.0.1", http_port)).ok
    assert not (await tcp_probe("127.0.0.1", free_port(), timeout=1)).ok
    result = await postgres_probe(PG_ADMIN_URL)
    if not result.ok:
        pytest.skip(f"PostgreSQL not reachable: {result.detail}")
    assert result.detail == "SELECT 1 ok"
    assert not (
        await postgres_probe(f"postgresql://nobody@127.0.0.1:{free_port()}/x", timeout=2)
    ).ok


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_redis_probe_sees_disconnection_and_recovery(tmp_path: Path) -> None:
    port = free_port()

    async def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (await tcp_probe("127.0.0.1", port, timeout=0.5)).ok:
            assert time.monotonic() < deadline, "redis-server did not start"
            await asyncio.sleep(0.05)
        return proc

    proc = await start()
    try:
        url = f"redis://127.0.0.1:{port}/0"
        assert (await redis_probe(url)).ok
        proc.terminate()
        proc.wait(10)
        down = await redis_probe(url, timeout=1)
        assert not down.ok and "connect failed" in down.detail
        proc = await start()
        assert (await redis_probe(url)).ok
    finally:
        proc.kill()
        proc.wait(10)


def test_json_path() -> None:
    doc = {"a": {"b": [10, {"c": "x"}]}}
    assert json_path(doc, "a.b.1.c") == "x"
    with pytest.raises(KeyError):
        json_path(doc, "a.z")


def test_probes_are_a_leaf_that_imports_no_feature() -> None:
    """The monitor and the drivers' readiness gate share the probes; the probes depend on
    neither (nor on any other capability)."""
    probe = (
        "import sys, pilothouse.core.probes\n"
        "print(sorted(m for m in sys.modules if m.startswith('pilothouse.')"
        " and not m.startswith('pilothouse.core')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout
