"""certificates and domains: tracked and issued certificates, the domain registry (seed 003)

`certificates` keeps seed 003's SSL Certificate fields plus what a handshake saw (issuer,
subject, SANs, chain validity), the endpoint it is observed at, its expiry alert levels and the
renewal bookkeeping; `domains` keeps seed 003's Domain Registry fields plus the DNS records to
create, the ownership token and the verification retries.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=True),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column(
            "platform",
            sa.Enum(
                "railway",
                "vercel",
                "router",
                "external",
                name="certificate_platform",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("certificate_authority", sa.String(length=200), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "pending",
                "expired",
                "failed",
                name="certificate_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("auto_renewal", sa.Boolean(), nullable=False),
        sa.Column("last_renewal_attempt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("certificate_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "source",
            sa.Enum(
                "observed",
                "acme",
                name="certificate_source",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("server_name", sa.String(length=253), nullable=False),
        sa.Column(
            "starttls",
            sa.Enum(
                "none",
                "smtp",
                name="certificate_starttls",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("issuer", sa.String(length=500), nullable=True),
        sa.Column("subject", sa.String(length=500), nullable=True),
        sa.Column("sans", JSON, nullable=False),
        sa.Column("chain_valid", sa.Boolean(), nullable=True),
        sa.Column("chain_error", sa.String(length=500), nullable=True),
        sa.Column("alert_days", JSON, nullable=False),
        sa.Column("renew_before_days", sa.Integer(), nullable=False),
        sa.Column("renewal_failures", sa.Integer(), nullable=False),
        sa.Column("next_renewal_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chain_pem", sa.Text(), nullable=True),
        sa.Column("key_sealed", sa.Text(), nullable=True),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name=op.f("ck_certificates_port_range")),
        sa.CheckConstraint(
            "renew_before_days BETWEEN 1 AND 365", name=op.f("ck_certificates_renew_before_range")
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_certificates_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_certificates_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
        sa.UniqueConstraint("host", "port", "server_name", name="uq_certificates_endpoint"),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index("ix_certificates_owner", ["owner_id"], unique=False)

    op.create_table(
        "domains",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("domain_name", sa.String(length=253), nullable=False),
        sa.Column("subdomain", sa.String(length=253), nullable=False),
        sa.Column("root_domain", sa.String(length=253), nullable=False),
        sa.Column("app_target", sa.String(length=100), nullable=False),
        sa.Column(
            "platform_target",
            sa.Enum(
                "railway",
                "vercel",
                "router",
                "external",
                name="domain_platform",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "dns_status",
            sa.Enum(
                "pending",
                "configured",
                "verified",
                "failed",
                name="domain_dns_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("cdn_enabled", sa.Boolean(), nullable=False),
        sa.Column("ssl_certificate_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "record_type",
            sa.Enum(
                "CNAME",
                "A",
                name="domain_record_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("record_target", sa.String(length=253), nullable=False),
        sa.Column("txt_token", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_domains_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_domains_owner_id_users")),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_domains_service_id_services")
        ),
        sa.ForeignKeyConstraint(
            ["ssl_certificate_id"],
            ["certificates.id"],
            name=op.f("fk_domains_ssl_certificate_id_certificates"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domains")),
        sa.UniqueConstraint("domain_name", name="uq_domains_domain_name"),
    )
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.create_index("ix_domains_owner", ["owner_id"], unique=False)

    op.create_table(
        "acme_accounts",
        sa.Column("directory_url", sa.String(length=500), nullable=False),
        sa.Column("uri", sa.String(length=500), nullable=True),
        sa.Column("key_sealed", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acme_accounts")),
        sa.UniqueConstraint("directory_url", name="uq_acme_accounts_directory"),
    )
    op.create_table(
        "acme_challenges",
        sa.Column("token", sa.String(length=200), nullable=False),
        sa.Column("key_authorization", sa.String(length=500), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_acme_challenges")),
    )


def downgrade() -> None:
    op.drop_table("acme_challenges")
    op.drop_table("acme_accounts")
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_index("ix_domains_owner")

    op.drop_table("domains")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index("ix_certificates_owner")

    op.drop_table("certificates")
