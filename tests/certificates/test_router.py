"""TLS at the nginx router: the sites' config (a table), then real nginx serving a domain with
its certificate by SNI, redirecting HTTP to HTTPS (the ACME path excepted), sending HSTS when
asked, and swapping certificates under load without one failed request."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from pilothouse.drivers.nginx import NginxRouter, RouterError, Site, TlsSettings, render_sites
from tests.certificates.support import leaf
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

SITE = Site("api.example.test", "0a1b-2c", "/tls/api.pem", "/tls/api.key")


@pytest.mark.parametrize(
    ("tls", "expected", "absent"),
    [
        (
            TlsSettings(https_port=443, http_port=80, hsts=False),
            [
                "listen 0.0.0.0:80;",
                "return 308 https://$host$request_uri;",
                "listen 0.0.0.0:443 ssl;",
                "server_name api.example.test;",
                "ssl_certificate /tls/api.pem;",
                "ssl_certificate_key /tls/api.key;",
                "proxy_pass http://svc_0a1b2c;",
                "location /.well-known/acme-challenge/",
                "proxy_pass http://127.0.0.1:8600;",
            ],
            ["Strict-Transport-Security"],
        ),
        (
            TlsSettings(https_port=8443, http_port=8080, bind="127.0.0.1", hsts=True),
            [
                "return 308 https://$host:8443$request_uri;",
                'add_header Strict-Transport-Security "max-age=31536000" always;',
            ],
            [],
        ),
    ],
)
def test_render_sites(tls: TlsSettings, expected: list[str], absent: list[str]) -> None:
    text = render_sites([SITE], tls)
    for line in expected:
        assert line in text
    for line in absent:
        assert line not in text
    assert render_sites([], tls) == ""


def test_a_domain_without_certificate_is_served_over_http() -> None:
    text = render_sites([Site("new.example.test", "svc")], TlsSettings())
    assert "location /.well-known/acme-challenge/" in text
    assert "proxy_pass http://svc_svc;" in text
    assert "ssl" not in text and "return 308" not in text


class _Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"from web"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _install(cert: trustme.LeafCert, directory: Path) -> tuple[str, str]:
    pem, key = directory / "api.pem", directory / "api.key"
    cert.private_key_pem.write_to_path(str(key))
    pem.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.chmod(0o600)
    return str(pem), str(key)


def _served_hash(port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="api.example.test") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def test_sni_redirect_hsts_and_a_swap_under_load(tmp_path: Path, backend: int) -> None:
    ca = trustme.CA()
    files = tmp_path / "tls"
    files.mkdir()
    first = leaf(ca, "api.example.test", days=30)
    cert_file, key_file = _install(first, files)
    router = NginxRouter(tmp_path / "nginx")
    https_port, http_port, service_port = free_port(), free_port(), free_port()
    tls = TlsSettings(https_port=https_port, http_port=http_port, bind="127.0.0.1", hsts=True)
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def go() -> tuple[int, int, list[str]]:
        try:
            await router.set_backends("svc-1", service_port, [backend])
            site = Site("api.example.test", "svc-1", cert_file, key_file)
            assert await router.set_sites([site], tls)
            assert not await router.set_sites([site], tls)  # unchanged: no reload
            with httpx.Client(verify=context) as client:
                # httpx sends the URL's host as SNI; the name resolves through a transport
                # bound to loopback, like curl --resolve.
                answer = client.get(
                    f"https://127.0.0.1:{https_port}/",
                    headers={"Host": "api.example.test"},
                    extensions={"sni_hostname": "api.example.test"},
                )
                assert answer.status_code == 200 and answer.text == "from web"
                assert answer.headers["strict-transport-security"] == "max-age=31536000"
                plain = client.get(
                    f"http://127.0.0.1:{http_port}/x?y=1", headers={"Host": "api.example.test"}
                )
                assert plain.status_code == 308
                assert plain.headers["location"] == f"https://api.example.test:{https_port}/x?y=1"

            # A site nginx cannot load is refused and the previous sites stay served.
            broken = Site("bad.example.test", "svc-1", str(files / "missing.pem"), key_file)
            with pytest.raises(RouterError, match=r"missing\.pem"):
                await router.set_sites([site, broken], tls)
            assert "bad.example.test" not in (tmp_path / "nginx/sites/tls.conf").read_text()

            hashes = [_served_hash(https_port, context)]
            stop = threading.Event()
            counts = {"ok": 0, "failed": 0}
            errors: list[str] = []

            def load() -> None:
                with httpx.Client(verify=context, timeout=5) as client:
                    while not stop.is_set():
                        try:
                            r = client.get(
                                f"https://127.0.0.1:{https_port}/",
                                headers={"Host": "api.example.test", "Connection": "close"},
                                extensions={"sni_hostname": "api.example.test"},
                            )
                            counts["ok" if r.status_code == 200 else "failed"] += 1
                        except httpx.HTTPError as exc:
                            counts["failed"] += 1
                            errors.append(repr(exc))

            threads = [threading.Thread(target=load) for _ in range(4)]
            for thread in threads:
                thread.start()
            for _ in range(3):
                await asyncio.sleep(0.2)
                _install(leaf(ca, "api.example.test", days=90), files)
                await router.reload()
                hashes.append(_served_hash(https_port, context))
            await asyncio.sleep(0.2)
            stop.set()
            for thread in threads:
                thread.join()
            await router.remove("svc-1")  # the last service: the site goes, nginx stops
            return counts["ok"], counts["failed"], errors + hashes
        finally:
            await router.stop()

    start = time.monotonic()
    ok, failed, details = asyncio.run(go())
    assert failed == 0, details
    assert ok > 10
    hashes = details[-4:]
    assert len(set(hashes)) == 4, "every swap served the new certificate"
    assert time.monotonic() - start < 60
