"""Request and response bodies for certificates and domains."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

CertStatus = Literal["active", "pending", "expired", "failed"]
DnsStatus = Literal["pending", "configured", "verified", "failed"]
Platform = Literal["railway", "vercel", "router", "external"]
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

    host: Hostname
    port: int = Field(default=443, ge=1, le=65535)
    server_name: Hostname | None = Field(default=None, description="SNI name; default: host.")
    starttls: Literal["none", "smtp"] = Field(
        default="none", description="`smtp`: speak SMTP and STARTTLS before the handshake."
    )
    environment: str | None = Field(default=None, max_length=100)
    alert_days: Levels | None = Field(default=None, description="Default: 30, 14, 7, 3, 1.")


class CertificateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_days: Levels | None = None
    auto_renewal: bool | None = None
    renew_before_days: int | None = Field(default=None, ge=1, le=365)


class CertificateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The seed's certificate_id.")
    domain: str
    platform: Platform
    certificate_authority: str | None
    status: CertStatus
    issued_at: datetime | None
    expires_at: datetime | None
    days_left: int | None = None
    auto_renewal: bool
    last_renewal_attempt: datetime | None
    certificate_hash: str | None = Field(description="sha256 of the leaf certificate (DER).")
    source: Literal["observed", "acme"]
    host: str
    port: int
    server_name: str
    starttls: str
    issuer: str | None
    subject: str | None
    sans: list[str]
    chain_valid: bool | None
    chain_error: str | None
    alert_days: list[int]
    renew_before_days: int
    last_checked_at: datetime | None
    last_error: str | None
    environment_id: uuid.UUID | None
    created_at: datetime


class DomainAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=3, max_length=253, description="Full domain name.")
    service: str = Field(min_length=1, max_length=100, description="Service (name or id).")
    environment: str | None = Field(default=None, max_length=100)
    root: str | None = Field(
        default=None, max_length=253, description="Root domain when not the last two labels."
    )
    cdn_enabled: bool = False


class DnsRecord(BaseModel):
    type: Literal["CNAME", "A", "TXT"]
    name: str
    value: str


class DomainRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The seed's domain_id.")
    domain_name: str
    subdomain: str
    root_domain: str
    app_target: str
    platform_target: Platform
    dns_status: DnsStatus
    cdn_enabled: bool
    ssl_certificate_id: uuid.UUID | None
    created_at: datetime
    verified_at: datetime | None
    service_id: uuid.UUID
    environment_id: uuid.UUID
    attempts: int
    next_check_at: datetime | None
    last_checked_at: datetime | None
    last_error: str | None
    records: list[DnsRecord] = Field(description="The DNS records to create.")
