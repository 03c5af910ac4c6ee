"""Network probes: one check each, with a timeout. Pure I/O, no feature imported: the health
monitor (healthchecks/monitor.py) and the drivers' readiness gate (drivers/readiness.py) both use
them; the rules that judge the results are in healthchecks/derive.py.

HTTP(S) uses a small asyncio HTTP/1.1 client instead of httpx: on these machines httpx's async
client managed ~160 requests/s at full CPU, far below what a probe loop needs (see
docs/benchmarks.md). PostgreSQL uses psycopg; Redis speaks RESP directly (PING); TLS performs
a real handshake and reports the certificate's remaining days.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg


@dataclass
class ProbeResult:
    ok: bool
    latency_ms: float | None
    detail: str
    status_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _elapsed(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def json_path(document: Any, path: str) -> Any:
    """A tiny JSON path: 'status', 'checks.db.status', 'items.0.name'."""
    node = document
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit():
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node[part]
        else:
            raise KeyError(part)
    return node


async def http_probe(
    url: str,
    *,
    timeout: float = 5.0,
    expect_status: tuple[int, ...] = (),
    latency_limit_ms: float | None = None,
    body_contains: str | None = None,
    json_equals: dict[str, Any] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ProbeResult:
    """GET url. Passes when the status is expected (default 2xx/3xx), within the latency limit,
    and the body conditions hold."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    start = time.perf_counter()
    try:
        context = (ssl_context or ssl.create_default_context()) if https else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if https else None
            ),
            timeout,
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return ProbeResult(False, None, f"connect failed: {type(exc).__name__}")
    try:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: pilothouse-probe\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), timeout - (time.perf_counter() - start))
    except (OSError, TimeoutError, ValueError) as exc:
        kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        return ProbeResult(False, _elapsed(start), f"request failed: {kind}")
    finally:
        writer.close()
    latency = _elapsed(start)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        return ProbeResult(False, latency, "no HTTP status line")
    code = int(status_line[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    ok_status = code in expect_status if expect_status else 200 <= code < 400
    if not ok_status:
        return ProbeResult(False, latency, f"HTTP {code}", code)
    if latency_limit_ms is not None and latency > latency_limit_ms:
        return ProbeResult(
            False, latency, f"slow: {latency:.0f} ms > {latency_limit_ms:.0f} ms", code
        )
    if body_contains is not None and body_contains.encode() not in body:
        return ProbeResult(False, latency, f"body lacks {body_contains!r}", code)
    if json_equals:
        try:
            document = json.loads(body)
            for path, expected in json_equals.items():
                actual = json_path(document, path)
                if actual != expected:
                    return ProbeResult(
                        False, latency, f"{path} is {actual!r}, not {expected!r}", code
                    )
        except (ValueError, KeyError, IndexError) as exc:
            return ProbeResult(False, latency, f"JSON condition failed: {exc!s}", code)
    return ProbeResult(True, latency, f"HTTP {code}", code)


async def http_get(
    url: str, *, timeout: float, accept: str = "*/*", max_bytes: int = 10 * 1024 * 1024
) -> tuple[int, bytes]:
    """GET an http:// URL with the same small client: (status, body). Raises TimeoutError,
    OSError, or ValueError (no status line, a body larger than `max_bytes`)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.perf_counter() + timeout
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 80), timeout
    )
    try:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: pilothouse\r\n"
            f"Accept: {accept}\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        raw = await asyncio.wait_for(
            reader.read(max_bytes + 65536), max(deadline - time.perf_counter(), 0.001)
        )
        chunks = [raw]
        while raw:
            raw = await asyncio.wait_for(
                reader.read(max_bytes + 65536), max(deadline - time.perf_counter(), 0.001)
            )
            chunks.append(raw)
            if sum(len(c) for c in chunks) > max_bytes + 65536:
                raise ValueError(f"answer larger than {max_bytes} bytes")
    finally:
        writer.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ValueError("no HTTP status line")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    if len(body) > max_bytes:
        raise ValueError(f"answer larger than {max_bytes} bytes")
    return int(status_line[1]), body


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


async def tcp_probe(host: str, port: int, *, timeout: float = 5.0) -> ProbeResult:
    start = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return ProbeResult(False, None, f"connect failed: {type(exc).__name__}")
    writer.close()
    return ProbeResult(True, _elapsed(start), "connected")


async def postgres_probe(dsn: str, *, timeout: float = 5.0) -> ProbeResult:
    """Connect and SELECT 1."""
    start = time.perf_counter()
    try:
        async with await asyncio.wait_for(
            psycopg.AsyncConnection.connect(dsn, connect_timeout=max(1, int(timeout))), timeout
        ) as conn:
            await asyncio.wait_for(conn.execute("SELECT 1"), timeout)
    except (psycopg.Error, OSError, TimeoutError) as exc:
        return ProbeResult(False, None, f"postgres: {type(exc).__name__}")
    return ProbeResult(True, _elapsed(start), "SELECT 1 ok")


async def redis_probe(url: str, *, timeout: float = 5.0) -> ProbeResult:
    """PING over RESP (AUTH first when the URL has a password)."""
    parts = urlsplit(url)
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 6379), timeout
        )
    except (OSError, TimeoutError) as exc:
        return ProbeResult(False, None, f"redis: connect failed: {type(exc).__name__}")
    try:
        if parts.password:
            args = [
                b"AUTH",
                *([parts.username.encode()] if parts.username else []),
                parts.password.encode(),
            ]
            writer.write(_resp(args))
            reply = await asyncio.wait_for(reader.readline(), timeout)
            if not reply.startswith(b"+OK"):
                return ProbeResult(False, None, "redis: AUTH refused")
        writer.write(_resp([b"PING"]))
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, TimeoutError) as exc:
        return ProbeResult(False, None, f"redis: {type(exc).__name__}")
    finally:
        writer.close()
    if not reply.startswith(b"+PONG"):
        return ProbeResult(False, None, f"redis: unexpected reply {reply[:40]!r}")
    return ProbeResult(True, _elapsed(start), "PONG")


def _resp(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def tls_probe(
    host: str,
    port: int = 443,
    *,
    server_name: str | None = None,
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> ProbeResult:
    """A real TLS handshake; reports the certificate's expiry and days left."""
    context = ssl_context or ssl.create_default_context()
    start = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=server_name or host),
            timeout,
        )
    except ssl.SSLCertVerificationError as exc:
        return ProbeResult(False, None, f"certificate not trusted: {exc.verify_message}")
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return ProbeResult(False, None, f"TLS handshake failed: {type(exc).__name__}")
    latency = _elapsed(start)
    cert = writer.get_extra_info("peercert") or {}
    writer.close()
    extra: dict[str, Any] = {}
    if "notAfter" in cert:
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
        extra = {"expires_at": expires.isoformat(), "days_left": (expires - datetime.now(UTC)).days}
    return ProbeResult(True, latency, "handshake ok", extra=extra)
