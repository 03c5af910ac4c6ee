"""Certificates by observation: a real TLS handshake with an endpoint (directly, or after
SMTP STARTTLS), and what its certificate says.

One handshake verifies the chain against the trust store (the system's, plus an optional CA
file); when verification fails, a second handshake without verification fetches the
certificate anyway, so an expired or self-signed certificate is still recorded (issuer,
expiry, hash) with the reason its chain failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID


@dataclass(frozen=True)
class Seen:
    """One observation of an endpoint."""

    handshake_ok: bool
    error: str | None = None
    chain_valid: bool | None = None
    chain_error: str | None = None
    issuer: str | None = None
    subject: str | None = None
    authority: str | None = None
    sans: list[str] = field(default_factory=list)
    not_before: datetime | None = None
    not_after: datetime | None = None
    sha256: str | None = None
    latency_ms: float | None = None


def _name(name: x509.Name) -> str:
    return name.rfc4514_string()[:500]


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def parse(der: bytes) -> dict[str, object]:
    """The fields pilothouse records from a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        san = ext.value
        assert isinstance(san, x509.SubjectAlternativeName)
        sans = [str(v) for v in san.get_values_for_type(x509.DNSName)]
        sans += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        sans = []
    authority = _attr(cert.issuer, NameOID.ORGANIZATION_NAME) or _attr(
        cert.issuer, NameOID.COMMON_NAME
    )
    return {
        "issuer": _name(cert.issuer),
        "subject": _name(cert.subject),
        "authority": authority,
        "sans": sans,
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "sha256": hashlib.sha256(der).hexdigest(),
    }


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The verifying context: the system's trust store plus `ca_file` when given."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE


async def _smtp_starttls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
) -> None:
    async def reply() -> str:
        while True:
            line = (await asyncio.wait_for(reader.readline(), timeout)).decode("latin-1")
            if not line:
                raise ConnectionError("SMTP server closed the connection")
            if len(line) < 4 or line[3] != "-":
                return line

    if not (await reply()).startswith("220"):
        raise ConnectionError("no SMTP greeting")
    writer.write(b"EHLO pilothouse\r\n")
    if not (await reply()).startswith("250"):
        raise ConnectionError("EHLO refused")
    writer.write(b"STARTTLS\r\n")
    if not (await reply()).startswith("220"):
        raise ConnectionError("STARTTLS refused")


async def _handshake(
    host: str,
    port: int,
    server_name: str,
    context: ssl.SSLContext,
    starttls: str,
    timeout: float,
) -> bytes:
    """The peer's leaf certificate (DER) after a handshake with `context`."""
    if starttls == "none":
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=server_name),
            timeout,
        )
    else:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        try:
            await _smtp_starttls(reader, writer, timeout)
            await asyncio.wait_for(writer.start_tls(context, server_hostname=server_name), timeout)
        except BaseException:
            writer.close()
            raise
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        writer.close()
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    return bytes(der)


async def observe(
    host: str,
    port: int = 443,
    *,
    server_name: str | None = None,
    starttls: str = "none",
    timeout: float = 5.0,
    context: ssl.SSLContext | None = None,
) -> Seen:
    """Handshake with host:port (SNI `server_name`, default host) and record its certificate."""
    name = server_name or host
    start = time.perf_counter()
    chain_error = None
    try:
        der = await _handshake(host, port, name, context or client_context(), starttls, timeout)
    except ssl.SSLCertVerificationError as exc:
        chain_error = str(exc.verify_message or exc.reason or "verification failed")[:500]
        try:
            der = await _handshake(host, port, name, _UNVERIFIED, starttls, timeout)
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as again:
            return Seen(False, f"TLS handshake failed: {type(again).__name__}")
    except TimeoutError:
        return Seen(False, "TLS handshake failed: timeout")
    except (OSError, ssl.SSLError, ConnectionError) as exc:
        return Seen(False, f"TLS handshake failed: {type(exc).__name__}")
    latency = (time.perf_counter() - start) * 1000
    fields = parse(der)
    return Seen(
        handshake_ok=True,
        chain_valid=chain_error is None,
        chain_error=chain_error,
        latency_ms=latency,
        **fields,  # type: ignore[arg-type]
    )
