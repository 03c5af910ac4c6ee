"""ACME end to end against a real pebble and the real nginx router (one store: the store is
not what is tested here).

A domain is registered and verified on the loopback DNS server (which also answers pebble's
lookups), a certificate is refused before verification (seed 003), then issued over HTTP-01:
pebble fetches /.well-known/acme-challenge/<token> from the router's HTTP port, which proxies
it to the live pilothouse API. `curl --cacert <pebble root> --resolve` then reaches the
service through the router over HTTPS; a forced renewal is served after the next sync. A
second certificate is issued over DNS-01 through the RFC 2136 provider. Keys are stored
sealed."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa

from pilothouse.certificates import issue
from pilothouse.certificates import router as tls_router
from pilothouse.certificates.dnsprovider import Rfc2136
from pilothouse.certificates.models import AcmeAccount, Certificate
from pilothouse.config import Settings
from pilothouse.core.crypto import load_keyring
from pilothouse.core.db import Database
from pilothouse.drivers.nginx import NginxRouter
from tests.certificates.pebble import Pebble, available
from tests.certificates.support import DnsServer
from tests.conftest import LiveServer, free_port, one_store

T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    not available() or shutil.which("nginx") is None or shutil.which("curl") is None,
    reason="Debian's pebble, nginx and curl are needed (./dev test installs pebble and nginx)",
)

TARGET = "edge.pilothouse.test"


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer(default_a="127.0.0.1")
    yield server
    server.close()


@one_store
def test_issue_renew_and_dns01_with_pebble(
    db_url: str, admin_token: str, tmp_path: Path, dns_server: DnsServer
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        role="api",
        dns_resolver=dns_server.address,
        dns_target=TARGET,
    )
    router = NginxRouter(tmp_path / "nginx")
    http_port, https_port = free_port(), free_port()
    settings.router_http_port, settings.router_https_port = http_port, https_port
    settings.router_tls_bind = "127.0.0.1"
    with LiveServer(settings) as server, Backend() as backend:
        settings.port = server.port  # where the router sends ACME challenges
        pebble = Pebble(tmp_path, http_port=http_port, dns_address=dns_server.address)
        try:
            settings.acme_directory_url = pebble.directory
            settings.acme_ca_file = pebble.ca_file
            headers = {"Authorization": f"Bearer {admin_token}"}
            with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=60) as c:
                c.post("/environments", json={"name": "prod", "type": "production"})
                c.post("/services", json={"environment": "prod", "name": "web", "command": "x"})
                domain = c.post("/domains", json={"domain": "api.example.test", "service": "web"})
                assert domain.status_code == 201, domain.text
                refused = c.post("/domains/api.example.test/certificate")
                assert refused.status_code == 409 and "not verified" in refused.text

                _, txt = domain.json()["records"]
                dns_server.set("api.example.test", "CNAME", f"{TARGET}.")
                dns_server.set(txt["name"], "TXT", txt["value"])
                verified = c.post("/domains/api.example.test/verify").json()
                assert verified["dns_status"] == "verified"
                # The service is routed (as a deployment does) and its domain served on HTTP.
                run(router.set_backends(verified["service_id"], free_port(), [backend.port]))
                assert run(sync(db_url, settings, router)) == 1

                issued = c.post("/domains/api.example.test/certificate")
                assert issued.status_code == 200, issued.text
                cert = issued.json()
                assert cert["status"] == "active", cert["last_error"]
                assert cert["source"] == "acme" and cert["platform"] == "router"
                assert cert["sans"] == ["api.example.test"] and cert["auto_renewal"]
                assert "Pebble" in cert["issuer"]
                shown = c.get("/domains/api.example.test").json()
                assert shown["ssl_certificate_id"] == cert["id"]

                run(sync(db_url, settings, router))
                root = tmp_path / "pebble-root.pem"
                root.write_text(pebble.root_pem())
                assert curl(root, https_port) == "from web"
                assert served_hash(root, https_port) == cert["certificate_hash"]

                renewed = c.post(f"/certificates/{cert['id']}/renew").json()
                assert renewed["status"] == "active"
                assert renewed["certificate_hash"] != cert["certificate_hash"]
                assert renewed["last_renewal_attempt"] is not None
                with Load(root, https_port) as load:  # clients keep calling during the swap
                    run(sync(db_url, settings, router))
                    time.sleep(0.2)
                assert load.failed == [] and load.ok > 0
                assert served_hash(root, https_port) == renewed["certificate_hash"]
                assert curl(root, https_port) == "from web"

            async def dns01() -> tuple[issue.Issued, list[str]]:
                db = Database(db_url)
                try:
                    keyring = load_keyring(None, settings.master_key_path)
                    config = issue.AcmeConfig(
                        directory_url=pebble.directory,
                        ca_file=pebble.ca_file,
                        challenge="dns-01",
                        dns=Rfc2136(dns_server.address, "example.test"),
                    )
                    got = await issue.obtain(db, keyring, config, ["dns.example.test"])
                    async with db.session(write=False) as session:
                        sealed = list(await session.scalars(sa.select(Certificate.key_sealed)))
                        sealed += list(await session.scalars(sa.select(AcmeAccount.key_sealed)))
                    return got, [s for s in sealed if s]
                finally:
                    await db.dispose()

            got, sealed = asyncio.run(dns01())
            assert got.fields["sans"] == ["dns.example.test"]
            assert dns_server.updates == 2  # published, then removed
            assert dns_server.records[("_acme-challenge.dns.example.test", "TXT")] == []
            assert sealed and not any("PRIVATE KEY" in s for s in sealed)
        finally:
            pebble.close()
            run(router.stop())


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def sync(db_url: str, settings: Settings, router: NginxRouter) -> int:
    db = Database(db_url)
    try:
        keyring = load_keyring(None, settings.master_key_path)
        return await tls_router.sync(db, keyring, router, tls_router.tls_settings(settings))
    finally:
        await db.dispose()


def curl(root: Path, port: int) -> str:
    """curl --cacert <pebble root> --resolve api.example.test:PORT:127.0.0.1 (the proof)."""
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "--cacert",
            str(root),
            "--resolve",
            f"api.example.test:{port}:127.0.0.1",
            f"https://api.example.test:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def served_hash(root: Path, port: int) -> str:
    context = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="api.example.test") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


class Load:
    """Two clients calling https://api.example.test through the router, a new connection
    each time, until the block ends; counts answers and failures."""

    def __init__(self, root: Path, port: int) -> None:
        self.context = ssl.create_default_context(cafile=str(root))
        self.port, self.ok, self.failed = port, 0, list[str]()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(2)]

    def run(self) -> None:
        with httpx.Client(verify=self.context, timeout=5) as client:
            while not self.stop.is_set():
                try:
                    answer = client.get(
                        f"https://127.0.0.1:{self.port}/",
                        headers={"Host": "api.example.test", "Connection": "close"},
                        extensions={"sni_hostname": "api.example.test"},
                    )
                    if answer.status_code == 200:
                        self.ok += 1
                    else:
                        self.failed.append(f"HTTP {answer.status_code}")
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


class Backend:
    """The service's one replica: answers "from web"."""

    def __enter__(self) -> Backend:
        class Answer(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "8")
                self.end_headers()
                self.wfile.write(b"from web")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
