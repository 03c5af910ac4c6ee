"""Request and response bodies for certificates and domains."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

CertStatus = Literal["active", "pending", "expired", "failed"]
DnsStatus = Literal["pending", "configured", "verified", "failed"]
Platform = Literal["railway", "vercel", "router", "external"]
#: Labels of 1-63 letters, digits and inner hyphens; at least two; the last not numeric.
DOMAIN_PATTERN = (
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)
Hostname = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$",
        description="Host name or IP address.",
    ),
]
Levels = Annotated[
    list[Annotated[int, Field(ge=1, le=365)]],
    Field(min_length=1, max_length=10, description="Days before expiry to alert at, once each."),
]


class CertificateTrack(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: Hostname = Field(description="Host name or IP address to connect to.")
    port: int = Field(default=443, ge=1, le=65535, description="TLS port.")
    server_name: Hostname | None = Field(default=None, description="SNI name; default: host.")
    starttls: Literal["none", "smtp"] = Field(
        default="none", description="`smtp`: speak SMTP and STARTTLS before the handshake."
    )
    environment: str | None = Field(
        default=None, max_length=100, description="Environment it belongs to."
    )
    alert_days: Levels | None = Field(default=None, description="Default: 30, 14, 7, 3, 1.")


class CertificateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_days: Levels | None = Field(default=None, description="Days before expiry to alert.")
    auto_renewal: bool | None = Field(default=None, description="Renew before expiry (ACME).")
    renew_before_days: int | None = Field(
        default=None, ge=1, le=365, description="Renewal window before expiry, in days."
    )


class CertificateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The seed's certificate_id.")
    domain: str = Field(description="The name the certificate is for (the SNI name asked).")
    platform: Platform = Field(description="Where it is served: router, external, railway, vercel.")
    certificate_authority: str | None = Field(description="Issuer organisation (or CN).")
    status: CertStatus = Field(description="active, pending (not seen yet), expired, failed.")
    issued_at: datetime | None = Field(description="Not valid before.")
    expires_at: datetime | None = Field(description="Not valid after.")
    days_left: int | None = Field(default=None, description="Whole days until expiry.")
    auto_renewal: bool = Field(description="Renewed by pilothouse (ACME) before expiry.")
    last_renewal_attempt: datetime | None = Field(description="Last renewal attempt, if any.")
    certificate_hash: str | None = Field(description="sha256 of the leaf certificate (DER).")
    source: Literal["observed", "acme"] = Field(description="Observed by handshakes, or issued.")
    host: str = Field(description="Host the handshake connects to.")
    port: int = Field(description="Port the handshake connects to.")
    server_name: str = Field(description="SNI name sent.")
    starttls: str = Field(description="none, or smtp (STARTTLS first).")
    issuer: str | None = Field(description="Issuer distinguished name.")
    subject: str | None = Field(description="Subject distinguished name.")
    sans: list[str] = Field(description="Subject alternative names (DNS names, addresses).")
    chain_valid: bool | None = Field(description="The chain verified against the trust store.")
    chain_error: str | None = Field(description="Why the chain did not verify.")
    alert_days: list[int] = Field(description="Days before expiry an alert is sent at.")
    renew_before_days: int = Field(description="Renewal window before expiry, in days.")
    last_checked_at: datetime | None = Field(description="Last handshake.")
    last_error: str | None = Field(description="Why the last handshake failed.")
    environment_id: uuid.UUID | None = Field(description="Environment it belongs to, if any.")
    created_at: datetime = Field(description="When tracking started.")


class DomainAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(
        min_length=3,
        max_length=253,
        pattern=DOMAIN_PATTERN,
        description="Full domain name, e.g. api.example.com.",
    )
    service: str = Field(min_length=1, max_length=100, description="Service (name or id).")
    environment: str | None = Field(
        default=None, max_length=100, description="The service's environment."
    )
    root: str | None = Field(
        default=None, max_length=253, description="Root domain when not the last two labels."
    )
    cdn_enabled: bool = Field(default=False, description="Served through a CDN.")


class DnsRecord(BaseModel):
    type: Literal["CNAME", "A", "TXT"] = Field(description="Record type.")
    name: str = Field(description="Record name.")
    value: str = Field(description="Record value.")


class DomainRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The seed's domain_id.")
    domain_name: str = Field(description="Full domain.")
    subdomain: str = Field(description="Part before the root domain (empty at the apex).")
    root_domain: str = Field(description="Root domain.")
    app_target: str = Field(description="Service the domain serves.")
    platform_target: Platform = Field(description="Where it points (router: pilothouse).")
    dns_status: DnsStatus = Field(description="pending, configured, verified, failed.")
    cdn_enabled: bool = Field(description="Served through a CDN.")
    ssl_certificate_id: uuid.UUID | None = Field(description="Its certificate, once issued.")
    created_at: datetime = Field(description="When it was registered.")
    verified_at: datetime | None = Field(description="When DNS was first verified.")
    service_id: uuid.UUID = Field(description="Service id.")
    environment_id: uuid.UUID = Field(description="The service's environment.")
    attempts: int = Field(description="Verification attempts so far.")
    next_check_at: datetime | None = Field(description="Next automatic check (none: failed).")
    last_checked_at: datetime | None = Field(description="Last check.")
    last_error: str | None = Field(description="What the last check did not find.")
    records: list[DnsRecord] = Field(description="The DNS records to create.")
