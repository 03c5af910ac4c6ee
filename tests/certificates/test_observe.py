"""Certificates by observation: real handshakes with loopback servers holding trustme
certificates (valid, untrusted, expired, behind SMTP STARTTLS, nothing listening)."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import trustme

from pilothouse.certificates.observe import observe
from tests.certificates.support import TlsServer, leaf


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="Pilothouse Test CA")


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def served(ca: trustme.CA) -> Iterator[tuple[TlsServer, trustme.LeafCert]]:
    cert = leaf(ca, "api.example.test", "www.example.test", days=6.5)
    server = TlsServer(cert)
    yield server, cert
    server.close()


async def test_a_valid_certificate_is_read_in_full(
    served: tuple[TlsServer, trustme.LeafCert], trusting: ssl.SSLContext
) -> None:
    server, cert = served
    seen = await observe("127.0.0.1", server.port, server_name="api.example.test", context=trusting)
    assert seen.handshake_ok and seen.chain_valid and seen.chain_error is None
    assert seen.sans == ["api.example.test", "www.example.test"]
    assert "Pilothouse Test CA" in (seen.issuer or "")
    assert seen.authority == "Pilothouse Test CA"
    assert seen.not_after is not None and seen.not_before is not None
    left = seen.not_after - datetime.now(UTC)
    assert timedelta(days=6) < left < timedelta(days=7)
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    assert seen.sha256 == hashlib.sha256(der).hexdigest()


async def test_an_untrusted_chain_is_still_recorded(
    served: tuple[TlsServer, trustme.LeafCert],
) -> None:
    server, _ = served
    seen = await observe("127.0.0.1", server.port, server_name="api.example.test")
    assert seen.handshake_ok and seen.chain_valid is False
    assert "self-signed" in (seen.chain_error or "") or "issuer" in (seen.chain_error or "")
    assert seen.sha256 and seen.not_after


async def test_a_wrong_name_fails_the_chain(
    served: tuple[TlsServer, trustme.LeafCert], trusting: ssl.SSLContext
) -> None:
    server, _ = served
    seen = await observe("127.0.0.1", server.port, server_name="other.test", context=trusting)
    assert seen.chain_valid is False and "mismatch" in (seen.chain_error or "").lower()


async def test_an_expired_certificate(ca: trustme.CA, trusting: ssl.SSLContext) -> None:
    now = datetime.now(UTC)
    cert = ca.issue_cert(
        "old.example.test", not_before=now - timedelta(days=90), not_after=now - timedelta(days=2)
    )
    server = TlsServer(cert)
    try:
        seen = await observe(
            "127.0.0.1", server.port, server_name="old.example.test", context=trusting
        )
    finally:
        server.close()
    assert seen.handshake_ok and seen.chain_valid is False
    assert "expired" in (seen.chain_error or "")
    assert seen.not_after is not None and seen.not_after < now


async def test_smtp_starttls(ca: trustme.CA, trusting: ssl.SSLContext) -> None:
    server = TlsServer(leaf(ca, "mail.example.test"), smtp=True)
    try:
        seen = await observe(
            "127.0.0.1",
            server.port,
            server_name="mail.example.test",
            starttls="smtp",
            context=trusting,
        )
    finally:
        server.close()
    assert seen.handshake_ok and seen.chain_valid, seen
    assert seen.sans == ["mail.example.test"]


async def test_nothing_listening() -> None:
    from tests.conftest import free_port

    seen = await observe("127.0.0.1", free_port(), timeout=1.0)
    assert not seen.handshake_ok and seen.error and "handshake failed" in seen.error
