"""Settings read from PILOTHOUSE_* environment variables (and defaults)."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The seed 002 words the findings settings take (config.py imports no feature module).
SEVERITIES = ("low", "medium", "high", "critical")
ENVIRONMENT_TYPES = ("development", "staging", "production")
MASTER_KEY_FILE = "master.key"  # in the data directory: one base64 key per line, mode 0600


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "pilothouse"


class Settings(BaseSettings):
    """Server-side settings; every field maps to PILOTHOUSE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="PILOTHOUSE_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Directory holding the SQLite database, the master key and logs.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the store. Unset: SQLite at <data_dir>/pilothouse.db. "
            "PostgreSQL: postgresql://user@host:5432/dbname."
        ),
    )
    master_key: str | None = Field(
        default=None,
        description="Base64 32-byte master key; overrides <data_dir>/master.key.",
    )
    host: str = Field(default="127.0.0.1", description="Address `serve` binds to.")
    port: int = Field(default=8600, description="Port `serve` listens on.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    db_pool_size: int = Field(default=10, description="Connections kept open to PostgreSQL.")
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body the API accepts, in bytes; larger ones get a 413.",
    )
    role: str = Field(
        default="all",
        pattern="^(all|api|worker)$",
        description="all: API and worker loops; api: API only; worker: the loops only.",
    )
    health_enabled: bool = Field(default=True, description="Run the health monitor in the worker.")
    reminder_minutes: float = Field(
        default=30.0, gt=0, description="Minutes between reminders while an incident lasts."
    )
    health_buffer: int = Field(
        default=10_000,
        ge=100,
        description=(
            "Health results a worker keeps in memory while the store is unreachable; beyond "
            "it the oldest are dropped (and counted in the log)."
        ),
    )
    lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description=(
            "Lease of a deployment or backup, renewed every third of it. A dead worker's work "
            "is taken over within this plus one reconcile tick (2 s for deployments)."
        ),
    )
    loop_intervals: dict[str, float] = Field(
        default_factory=dict,
        description=(
            'Seconds between runs of registered loops, by name (JSON, e.g. {"healthchecks.remind":'
            " 10}); docs/architecture.md lists the loops and their defaults."
        ),
    )

    backups_enabled: bool = Field(
        default=True, description="Run backup schedules, retries, drills and cleanup in the worker."
    )
    backup_cleanup_schedule: str = Field(
        default="0 3 * * *", description="Cron (UTC) of the backup retention cleanup job."
    )
    backup_concurrency: int = Field(
        default=1, ge=1, le=8, description="Backups one worker runs at the same time."
    )
    backup_freshness_grace_minutes: int = Field(
        default=60,
        ge=0,
        le=10080,
        description=(
            "Minutes past a target's schedule interval without a verified backup before it is "
            "overdue (one alert per overdue period, a notice when fresh again)."
        ),
    )

    metrics_enabled: bool = Field(
        default=True, description="Run metric rollups, retention and alert rules in the worker."
    )
    metrics_raw_hours: float = Field(
        default=24.0,
        gt=0,
        description="Hours raw metric samples are kept before only rollups stay.",
    )
    metrics_1m_days: float = Field(default=7.0, gt=0, description="Days 1-minute rollups are kept.")
    metrics_5m_days: float = Field(
        default=30.0, gt=0, description="Days 5-minute rollups are kept."
    )
    metrics_1h_days: float = Field(default=400.0, gt=0, description="Days hourly rollups are kept.")
    metrics_scrape_enabled: bool = Field(
        default=True,
        description="Scrape every running replica's /metrics and write the built-in samples.",
    )
    autoscaling_enabled: bool = Field(
        default=True, description="Evaluate scaling policies in the worker (autoscaling)."
    )
    scaling_event_days: float = Field(
        default=90.0, gt=0, description="Days scaling events are kept."
    )
    metrics_token: str | None = Field(
        default=None,
        description=(
            "Bearer token that lets a scraper read pilothouse's own /metrics from any address."
        ),
    )
    metrics_allow: list[IPv4Network | IPv6Network] = Field(
        default_factory=lambda: [ip_network("127.0.0.1/32"), ip_network("::1/128")],
        description=(
            "Addresses (CIDR, JSON list) that may read /metrics without the token; [] means "
            "the token only."
        ),
    )

    node_name: str = Field(
        default="local",
        min_length=1,
        max_length=100,
        description="Name this host registers itself under as a node (docs/nodes.md).",
    )
    node_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels of this host's node (JSON object)."
    )
    node_capacity: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Overrides of the detected capacity (JSON: cpu_cores, memory_mb, gpu_units, "
            "storage_gb)."
        ),
    )
    node_unreachable_after: float = Field(
        default=15.0,
        ge=2.0,
        le=3600.0,
        description=(
            "Seconds an ssh node may go without answering its probes before it is marked "
            "unreachable, its replicas failed and replaced elsewhere (docs/multihost.md)."
        ),
    )
    container_engine: str = Field(
        default="podman",
        description="Container engine CLI of the container driver: podman or docker.",
    )
    container_runtime: str | None = Field(
        default="runc",
        description=(
            "OCI runtime written to pilothouse's own containers.conf (podman); empty: the "
            "engine's default."
        ),
    )
    web_session_hours: float = Field(
        default=12.0,
        gt=0,
        le=24 * 30,
        description="Hours a dashboard login lasts (its token's revocation ends it sooner).",
    )
    web_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Seconds between the dashboard's live refreshes of status and replicas, and "
            "between a live log stream's session checks."
        ),
    )
    web_sse_ping_seconds: float = Field(
        default=15.0, gt=0, description="Seconds between keep-alive pings on live log streams."
    )

    findings_enabled: bool = Field(
        default=True,
        description="Run scheduled scans, SLA breach alerts and risk expiry in the worker.",
    )
    findings_sla_days: dict[str, int] = Field(
        default_factory=lambda: {"critical": 7, "high": 30, "medium": 90, "low": 180},
        description="Days to fix an open finding, by severity (JSON object).",
    )
    findings_gate_severities: list[str] = Field(
        default_factory=lambda: ["critical"],
        description=(
            "Severities of open findings that block a deployment (JSON list); [] turns the "
            "security gate off."
        ),
    )
    findings_gate_environment_types: list[str] = Field(
        default_factory=lambda: ["production"],
        description="Environment types whose deployments the security gate applies to.",
    )
    findings_scan_timeout: float = Field(
        default=600.0, gt=0, description="Seconds a `scan run` scanner may take before it fails."
    )
    findings_max_report_mb: int = Field(
        default=512,
        ge=1,
        description="Largest scan report `scan import` accepts, in MB (streamed to disk).",
    )

    @field_validator("findings_sla_days")
    @classmethod
    def _sla_days(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - set(SEVERITIES)
        if unknown:
            raise ValueError(f"unknown severities {sorted(unknown)}; use {', '.join(SEVERITIES)}")
        if any(not 1 <= days <= 3650 for days in value.values()):
            raise ValueError("days must be between 1 and 3650")
        return {**{"critical": 7, "high": 30, "medium": 90, "low": 180}, **value}

    @field_validator("findings_gate_severities")
    @classmethod
    def _gate_severities(cls, value: list[str]) -> list[str]:
        unknown = set(value) - set(SEVERITIES)
        if unknown:
            raise ValueError(f"unknown severities {sorted(unknown)}; use {', '.join(SEVERITIES)}")
        return value

    @field_validator("findings_gate_environment_types")
    @classmethod
    def _gate_types(cls, value: list[str]) -> list[str]:
        unknown = set(value) - set(ENVIRONMENT_TYPES)
        if unknown:
            raise ValueError(f"unknown environment types {sorted(unknown)}")
        return value

    certs_enabled: bool = Field(
        default=True,
        description=(
            "Check tracked certificates, send expiry alerts and verify domains in the worker."
        ),
    )
    certs_check_minutes: float = Field(
        default=60.0, gt=0, description="Minutes between two handshakes with a tracked endpoint."
    )
    certs_ca_file: str | None = Field(
        default=None,
        description="Extra CA certificates (PEM file) trusted when checking certificate chains.",
    )
    certs_warn_days: int = Field(
        default=14,
        ge=0,
        le=365,
        description=(
            "A service whose certificate expires within this many days is degraded (a warning, "
            "never downtime)."
        ),
    )
    dns_resolver: str | None = Field(
        default=None,
        description=(
            "DNS server used to verify domains, as host or host:port; unset: the system's."
        ),
    )
    dns_target: str | None = Field(
        default=None,
        description=(
            "Where custom domains must point: a hostname (CNAME) or an IP address (A record); "
            "unset: the environment's domain."
        ),
    )
    domain_recheck_hours: float = Field(
        default=24.0, gt=0, description="Hours between re-checks of a verified domain."
    )
    domain_max_attempts: int = Field(
        default=30,
        ge=1,
        description="Verification attempts (with backoff) before a pending domain is failed.",
    )

    acme_directory_url: str = Field(
        default="https://acme-v02.api.letsencrypt.org/directory",
        description=(
            "ACME directory certificates are issued from (Let's Encrypt production; its "
            "staging, ZeroSSL or a private CA work the same)."
        ),
    )
    acme_email: str | None = Field(default=None, description="Contact e-mail of the ACME account.")
    acme_ca_file: str | None = Field(
        default=None, description="CA certificates (PEM) to trust for the ACME directory's TLS."
    )
    acme_challenge: Literal["http-01", "dns-01"] = Field(
        default="http-01", description="ACME challenge: http-01 (router) or dns-01 (RFC 2136)."
    )
    acme_dns_server: str | None = Field(
        default=None, description="DNS-01: server (host or host:port) taking RFC 2136 updates."
    )
    acme_dns_zone: str | None = Field(
        default=None, description="DNS-01: the zone the updates go to (e.g. example.com)."
    )
    acme_tsig_name: str | None = Field(default=None, description="DNS-01: TSIG key name.")
    acme_tsig_secret: str | None = Field(
        default=None, description="DNS-01: TSIG key secret (base64)."
    )
    acme_tsig_algorithm: str = Field(default="hmac-sha256", description="DNS-01: TSIG algorithm.")
    acme_dns_propagation_seconds: float = Field(
        default=10.0, ge=0, description="DNS-01: seconds to wait after publishing a record."
    )
    acme_renew_before_days: int = Field(
        default=30,
        ge=1,
        le=365,
        description="Renew ACME certificates this many days before expiry.",
    )

    router_https_port: int = Field(
        default=443, ge=1, le=65535, description="Port the router serves custom domains on (TLS)."
    )
    router_http_port: int = Field(
        default=80,
        ge=1,
        le=65535,
        description="Port the router redirects to HTTPS on (and answers ACME HTTP-01 through).",
    )
    router_tls_bind: str = Field(
        default="0.0.0.0", description="Address the router's HTTPS and HTTP ports bind to."
    )
    router_hsts: bool = Field(
        default=False, description="Send Strict-Transport-Security on the custom domains."
    )
    router_hsts_max_age: int = Field(default=31536000, ge=0, description="HSTS max-age in seconds.")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "pilothouse.db"

    @property
    def master_key_path(self) -> Path:
        return self.data_dir / MASTER_KEY_FILE

    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite default."""
        return self.database_url or f"sqlite:///{self.sqlite_path}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
