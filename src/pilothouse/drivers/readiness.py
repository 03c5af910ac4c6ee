"""Readiness checks: HTTP path or TCP port, N consecutive successes within a timeout."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pilothouse.core import probes

SUCCESS = tuple(range(200, 300))


class ReadinessSpec(BaseModel):
    """The `health_check` of a service, as the release engine reads it."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="http", pattern="^(http|tcp)$", description="http or tcp.")
    path: str = Field(default="/health", description="HTTP path checked on each replica.")
    timeout: float = Field(default=30.0, gt=0, le=3600, description="Seconds to become ready.")
    interval: float = Field(
        default=0.1,
        gt=0,
        le=3600,
        description="Seconds between readiness checks (and between public-URL probes, 60 unset).",
    )
    successes: int = Field(default=1, ge=1, le=100, description="Consecutive passes needed.")
    request_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds per check (readiness and monitor probes)."
    )


@dataclass
class ReadyResult:
    ready: bool
    seconds: float
    detail: str
    exit_code: int | None = None  # of a replica stopped because it never became ready


async def check_once(spec: ReadinessSpec, host: str, port: int) -> tuple[bool, str]:
    """One readiness probe: a TCP connect, or an HTTP GET of `path` expecting 2xx."""
    if spec.type == "tcp":
        result = await probes.tcp_probe(host, port, timeout=spec.request_timeout)
    else:
        result = await probes.http_probe(
            f"http://{host}:{port}{spec.path}",
            timeout=spec.request_timeout,
            expect_status=SUCCESS,
        )
    return result.ok, result.detail


async def wait_ready(
    spec: ReadinessSpec, host: str, port: int, *, alive: Any = None
) -> ReadyResult:
    """Poll until `successes` consecutive checks pass, the timeout passes, or `alive()` is False."""
    started = time.monotonic()
    deadline = started + spec.timeout
    streak = 0
    detail = "not checked"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return ReadyResult(False, time.monotonic() - started, "process exited")
        ok, detail = await check_once(spec, host, port)
        streak = streak + 1 if ok else 0
        if streak >= spec.successes:
            return ReadyResult(True, time.monotonic() - started, detail)
        await asyncio.sleep(spec.interval)
    return ReadyResult(
        False, time.monotonic() - started, f"not ready after {spec.timeout:g}s ({detail})"
    )
