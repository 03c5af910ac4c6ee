"""Certificate and domain tables (seed 003 SSL Certificate Management, Domain Registry).

The seed's field names are kept: a certificate's `domain`, `platform`, `certificate_authority`,
`status` (`active|pending|expired|failed`), `issued_at`, `expires_at`, `auto_renewal`,
`last_renewal_attempt`, `certificate_hash`; a domain's `domain_name`, `subdomain`, `root_domain`,
`app_target`, `platform_target`, `dns_status` (`pending|configured|verified|failed`),
`cdn_enabled`, `ssl_certificate_id`, `created_at`, `verified_at`. The `id` column is the seed's
`certificate_id` / `domain_id`.

The seed's platform enum named two PaaS hosts (Railway, Vercel); pilothouse adds its own:
`router` (served by pilothouse's nginx router) and `external` (only observed).

What pilothouse adds: where a certificate is observed (host, port, server name, STARTTLS), what
the last handshake saw (issuer, subject, SANs, chain validity), the expiry alert levels, and the
renewal bookkeeping; a domain's DNS records to create, its ownership token and its retries.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, UUIDPk
from pilothouse.core.types import JSONType, str_enum

CERT_STATUSES = ("active", "pending", "expired", "failed")
DNS_STATUSES = ("pending", "configured", "verified", "failed")
PLATFORMS = ("railway", "vercel", "router", "external")
SOURCES = ("observed", "acme")
STARTTLS = ("none", "smtp")
#: Days before expiry at which an alert is sent, once each (uptime-kuma#3229).
DEFAULT_ALERT_DAYS = (30, 14, 7, 3, 1)


class Certificate(UUIDPk, Base):
    """One certificate: observed at an endpoint by real handshakes, or issued by ACME."""

    __tablename__ = "certificates"
    __table_args__ = (
        sa.UniqueConstraint("host", "port", "server_name", name="uq_certificates_endpoint"),
        sa.Index("ix_certificates_owner", "owner_id"),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name="port_range"),
        sa.CheckConstraint("renew_before_days BETWEEN 1 AND 365", name="renew_before_range"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("environments.id"), default=None
    )
    domain: Mapped[str] = mapped_column(sa.String(253))
    platform: Mapped[str] = mapped_column(
        str_enum(*PLATFORMS, name="certificate_platform"), default="external"
    )
    certificate_authority: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    status: Mapped[str] = mapped_column(
        str_enum(*CERT_STATUSES, name="certificate_status"), default="pending"
    )
    issued_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    auto_renewal: Mapped[bool] = mapped_column(default=False)
    last_renewal_attempt: Mapped[datetime | None] = mapped_column(default=None)
    certificate_hash: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    # -- pilothouse's additions ------------------------------------------------------------
    source: Mapped[str] = mapped_column(
        str_enum(*SOURCES, name="certificate_source"), default="observed"
    )
    host: Mapped[str] = mapped_column(sa.String(253))
    port: Mapped[int] = mapped_column(default=443)
    server_name: Mapped[str] = mapped_column(sa.String(253))
    starttls: Mapped[str] = mapped_column(
        str_enum(*STARTTLS, name="certificate_starttls"), default="none"
    )
    issuer: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    subject: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    sans: Mapped[list[str]] = mapped_column(JSONType, default=list)
    chain_valid: Mapped[bool | None] = mapped_column(default=None)
    chain_error: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    alert_days: Mapped[list[int]] = mapped_column(
        JSONType, default=lambda: list(DEFAULT_ALERT_DAYS)
    )
    renew_before_days: Mapped[int] = mapped_column(default=30)
    renewal_failures: Mapped[int] = mapped_column(default=0)
    next_renewal_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    last_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The issued chain (public, PEM) and its private key sealed with the keyring (ACME).
    chain_pem: Mapped[str | None] = mapped_column(sa.Text, default=None)
    key_sealed: Mapped[str | None] = mapped_column(sa.Text, default=None)
    key_id: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Domain(UUIDPk, Base):
    """A custom domain of a service (seed 003 Domain Registry)."""

    __tablename__ = "domains"
    __table_args__ = (
        sa.UniqueConstraint("domain_name", name="uq_domains_domain_name"),
        sa.Index("ix_domains_owner", "owner_id"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"))
    domain_name: Mapped[str] = mapped_column(sa.String(253))
    subdomain: Mapped[str] = mapped_column(sa.String(253), default="")
    root_domain: Mapped[str] = mapped_column(sa.String(253))
    app_target: Mapped[str] = mapped_column(sa.String(100))
    platform_target: Mapped[str] = mapped_column(
        str_enum(*PLATFORMS, name="domain_platform"), default="router"
    )
    dns_status: Mapped[str] = mapped_column(
        str_enum(*DNS_STATUSES, name="domain_dns_status"), default="pending"
    )
    cdn_enabled: Mapped[bool] = mapped_column(default=False)
    ssl_certificate_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("certificates.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(default=None)
    # -- pilothouse's additions ------------------------------------------------------------
    record_type: Mapped[str] = mapped_column(str_enum("CNAME", "A", name="domain_record_type"))
    record_target: Mapped[str] = mapped_column(sa.String(253))
    txt_token: Mapped[str] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    next_check_at: Mapped[datetime | None] = mapped_column(default=None)
    last_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(sa.String(500), default=None)


class AcmeAccount(UUIDPk, Base):
    """pilothouse's account with one ACME directory; its key sealed with the keyring."""

    __tablename__ = "acme_accounts"
    __table_args__ = (sa.UniqueConstraint("directory_url", name="uq_acme_accounts_directory"),)

    directory_url: Mapped[str] = mapped_column(sa.String(500))
    uri: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    key_sealed: Mapped[str] = mapped_column(sa.Text)
    key_id: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AcmeChallenge(Base):
    """An HTTP-01 challenge being answered: any pilothouse API process serves it at
    /.well-known/acme-challenge/<token> (the router proxies that path to the API)."""

    __tablename__ = "acme_challenges"

    token: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    key_authorization: Mapped[str] = mapped_column(sa.String(500))
    domain: Mapped[str] = mapped_column(sa.String(253))
    expires_at: Mapped[datetime] = mapped_column()
