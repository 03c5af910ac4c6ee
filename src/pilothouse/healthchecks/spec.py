"""The typed `health_check` of a service, validated when it is written.

One model for everything that reads it: the release engine's readiness gate (the fields of
`drivers.readiness.ReadinessSpec`, which this extends) and the health monitor (intervals,
conditions on the public URL, thresholds, SLA target, public badge). Each setting has one
default, here. Stored as given (only the keys that were set), read back through `parse`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pilothouse.core.logging import get_logger
from pilothouse.drivers.readiness import ReadinessSpec

log = get_logger("pilothouse.health")

#: Seconds between probes of the public URL when `interval` is not set (readiness polls of a new
#: replica use `interval` too, 0.1 s when unset: docs/health.md and docs/releases.md).
URL_INTERVAL = 60.0


class ThresholdsSpec(BaseModel):
    """When a service is degraded or unhealthy (healthchecks/derive.py's Thresholds)."""

    model_config = ConfigDict(extra="forbid")

    response_ms: float = Field(default=200.0, gt=0, description="Slower than this: degraded.")
    database_slow_ms: float = Field(default=100.0, gt=0, description="Slow database: degraded.")
    redis_slow_ms: float = Field(default=50.0, gt=0, description="Slow Redis: degraded.")
    error_rate_degraded: float = Field(default=0.01, ge=0, le=1, description="Error share.")
    error_rate_unhealthy: float = Field(default=0.05, ge=0, le=1, description="Error share.")
    failures_to_unhealthy: int = Field(default=3, ge=1, le=100, description="Consecutive.")
    successes_to_healthy: int = Field(default=2, ge=1, le=100, description="Consecutive.")


class ScrapeSpec(BaseModel):
    """How the metrics scraper reads a replica's Prometheus exposition (metrics/scrape.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="False: replicas are not scraped.")
    path: str = Field(
        default="/metrics",
        # control characters and space spelled out: `\s` means different sets in Python,
        # pydantic-core and JSON Schema, so a generated client could disagree with the server
        pattern=r"^/[^\x00-\x20\x7f?#]*$",
        max_length=200,
        description="Scrape path.",
    )
    interval: float = Field(default=15.0, ge=1, le=3600, description="Seconds between scrapes.")
    timeout: float = Field(default=5.0, gt=0, le=60, description="Seconds per scrape.")


class HealthCheckSpec(ReadinessSpec):
    """A service's `health_check` (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="False: the monitor does not probe it.")
    replica_interval: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds between probes of each replica."
    )
    expect_status: list[int] = Field(
        default_factory=list, description="Public URL: accepted HTTP statuses (default 2xx/3xx)."
    )
    body_contains: str | None = Field(default=None, description="Public URL: body must hold it.")
    json_equals: dict[str, Any] | None = Field(
        default=None, description='Public URL: JSON paths and values, e.g. {"status": "up"}.'
    )
    latency_limit_ms: float | None = Field(
        default=None, gt=0, description="Slower answers count as failed."
    )
    thresholds: ThresholdsSpec = Field(
        default_factory=ThresholdsSpec, description="Degraded and unhealthy rules."
    )
    sla_target: float = Field(default=99.5, ge=0, le=100, description="Monthly uptime target %.")
    public_badge: bool = Field(default=False, description="Serve public badges of this service.")
    metrics: ScrapeSpec = Field(
        default_factory=ScrapeSpec, description="Scraping of each replica's /metrics."
    )

    def url_interval(self) -> float:
        """Seconds between probes of the public URL."""
        return self.interval if "interval" in self.model_fields_set else URL_INTERVAL


def stored(spec: HealthCheckSpec) -> dict[str, Any]:
    """What is kept in the database: the keys that were given."""
    return spec.model_dump(mode="json", exclude_unset=True)


def parse(raw: dict[str, Any] | None) -> HealthCheckSpec:
    """The stored health_check as a spec; a row written before validation existed that no
    longer validates falls back to the defaults (logged), never stops the monitor."""
    try:
        return HealthCheckSpec.model_validate(raw or {})
    except ValidationError as exc:
        log.warning("invalid stored health_check; using defaults", error=str(exc)[:300])
        return HealthCheckSpec()
