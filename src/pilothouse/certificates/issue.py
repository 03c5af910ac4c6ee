"""ACME issuance and renewal with the certbot project's `acme` client library.

The directory URL is configurable (Let's Encrypt production or staging, ZeroSSL, a private CA
such as step-ca or pebble). The account key (RSA 2048) and every certificate's private key
(ECDSA P-256) are sealed with the master keyring before they are stored; the chain is public
and stored as PEM.

Challenges: HTTP-01 answers are written to `acme_challenges`, which every pilothouse API
process serves at `/.well-known/acme-challenge/<token>` (the router proxies that path to the
API); DNS-01 answers are published through a DNS provider (dnsprovider.py: RFC 2136).

Seed rule: a certificate is issued only for a domain whose DNS is verified.
The `acme` client is synchronous (requests): its calls run in a thread.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from acme import client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwk import JWKRSA
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require
from pilothouse.audit import service as audit
from pilothouse.certificates import rules
from pilothouse.certificates.dnsprovider import DnsProvider, wait
from pilothouse.certificates.domains import get_domain
from pilothouse.certificates.models import AcmeAccount, AcmeChallenge, Certificate, Domain
from pilothouse.certificates.observe import parse
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import Keyring, open_value, seal_value
from pilothouse.core.db import Database
from pilothouse.core.logging import get_logger
from pilothouse.errors import Conflict

log = get_logger("pilothouse.certificates")

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


class IssueFailed(Exception):
    pass


@dataclass(frozen=True)
class AcmeConfig:
    directory_url: str = LETS_ENCRYPT
    email: str | None = None
    ca_file: str | None = None  # trust for the directory's own TLS (a private CA, pebble)
    challenge: str = "http-01"  # or "dns-01"
    dns: DnsProvider | None = field(default=None, repr=False)
    propagation_seconds: float = 0.0
    timeout: float = 120.0


@dataclass(frozen=True)
class Issued:
    chain_pem: str
    key_pem: bytes = field(repr=False)
    fields: dict[str, Any] = field(default_factory=dict)


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


async def _account(
    db: Database, keyring: Keyring, directory_url: str
) -> tuple[AcmeAccount, JWKRSA]:
    """This directory's account row and key (made and sealed the first time)."""
    async with db.session() as session:
        row = await session.scalar(
            sa.select(AcmeAccount).where(AcmeAccount.directory_url == directory_url)
        )
        if row is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            row = AcmeAccount(
                directory_url=directory_url,
                key_sealed=seal_value(_pem(key).decode(), keyring),
                key_id=keyring.current.hex(),
            )
            session.add(row)
            await session.flush()
        pem = open_value(row.key_sealed, keyring).encode()
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    return row, JWKRSA(key=loaded)


def _connect(config: AcmeConfig, key: JWKRSA, uri: str | None) -> tuple[client.ClientV2, str]:
    """A client registered with the directory (an existing account is found by its key)."""
    verify: Any = config.ca_file or True
    net = client.ClientNetwork(key, user_agent="pilothouse", verify_ssl=verify, timeout=30)
    directory = client.ClientV2.get_directory(config.directory_url, net)
    acme = client.ClientV2(directory, net)
    registration = messages.NewRegistration.from_data(
        email=config.email, terms_of_service_agreed=True
    )
    try:
        regr = acme.new_account(registration)
    except errors.ConflictError as exc:  # this key has an account already
        regr = acme.query_registration(
            messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        )
    net.account = regr
    return acme, str(regr.uri)


def _pick(authz: messages.AuthorizationResource, kind: str) -> messages.ChallengeBody:
    for challb in authz.body.challenges:
        if challb.chall.typ == kind:
            return challb
    offered = ", ".join(c.chall.typ for c in authz.body.challenges)
    raise IssueFailed(
        f"the CA offers no {kind} challenge for {authz.body.identifier.value} ({offered})"
    )


async def obtain(db: Database, keyring: Keyring, config: AcmeConfig, names: list[str]) -> Issued:
    """Order a certificate for `names`, answer its challenges, finalize; the chain and key."""
    account, account_key = await _account(db, keyring, config.directory_url)
    try:
        acme, uri = await asyncio.to_thread(_connect, config, account_key, account.uri)
    except (errors.Error, messages.Error, OSError) as exc:
        raise IssueFailed(f"ACME directory {config.directory_url}: {_reason(exc)}") from None
    if uri != account.uri:
        async with db.session() as session:
            await session.execute(
                sa.update(AcmeAccount).where(AcmeAccount.id == account.id).values(uri=uri)
            )
    cert_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = _pem(cert_key)
    csr = crypto_util.make_csr(key_pem, names)
    published: list[tuple[str, str]] = []
    tokens: list[str] = []
    try:
        order = await asyncio.to_thread(acme.new_order, csr)
        answers = []
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # validated recently (the CA reuses the authorization)
            challb = _pick(authz, config.challenge)
            response, validation = challb.response_and_validation(account_key)
            domain = authz.body.identifier.value
            if config.challenge == "http-01":
                token = challb.chall.encode("token")
                async with db.session() as session:
                    session.add(
                        AcmeChallenge(
                            token=token,
                            key_authorization=validation,
                            domain=domain,
                            expires_at=utcnow() + timedelta(hours=1),
                        )
                    )
                tokens.append(token)
            else:
                if config.dns is None:
                    raise IssueFailed("dns-01 needs a DNS provider (PILOTHOUSE_ACME_DNS_SERVER)")
                name = challb.chall.validation_domain_name(domain)
                await config.dns.publish(name, validation)
                published.append((name, validation))
            answers.append((challb, response))
        if published:
            await wait(config.propagation_seconds)
        for challb, response in answers:
            await asyncio.to_thread(acme.answer_challenge, challb, response)
        deadline = datetime.now() + timedelta(seconds=config.timeout)
        order = await asyncio.to_thread(acme.poll_and_finalize, order, deadline)
    except IssueFailed:
        raise
    except (errors.Error, messages.Error, OSError) as exc:
        raise IssueFailed(_reason(exc)) from None
    finally:
        if tokens:
            async with db.session() as session:
                await session.execute(
                    sa.delete(AcmeChallenge).where(AcmeChallenge.token.in_(tokens))
                )
        for name, value in published:
            try:
                await config.dns.remove(name, value)  # type: ignore[union-attr]
            except Exception as exc:
                log.warning("DNS-01 record not removed", name=name, reason=str(exc)[:200])
    chain = str(order.fullchain_pem)
    der = ssl.PEM_cert_to_DER_cert(
        chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    return Issued(chain, key_pem, parse(der))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, errors.ValidationError):
        problems = [
            str(authz.body.identifier.value) + ": " + str(c.error.detail if c.error else "invalid")
            for authz in exc.failed_authzrs
            for c in authz.body.challenges
            if c.error
        ]
        return "validation failed: " + "; ".join(problems)[:400]
    if isinstance(exc, messages.Error):
        return f"{exc.typ}: {exc.detail}"[:400]
    return f"{type(exc).__name__}: {exc}"[:400]


def record(cert: Certificate, issued: Issued, keyring: Keyring, authority: str | None) -> None:
    """Store an issued certificate on its row: chain, sealed key, what it says."""
    fields = issued.fields
    cert.chain_pem = issued.chain_pem
    cert.key_sealed = seal_value(issued.key_pem.decode(), keyring)
    cert.key_id = keyring.current.hex()
    cert.issuer = str(fields["issuer"])
    cert.subject = str(fields["subject"])
    cert.sans = list(fields["sans"])
    cert.issued_at = fields["not_before"]
    cert.expires_at = fields["not_after"]
    cert.certificate_hash = str(fields["sha256"])
    cert.certificate_authority = authority or str(fields["authority"] or "") or None
    cert.chain_valid = True
    cert.chain_error = None
    cert.renewal_failures = 0
    cert.next_renewal_at = None
    cert.last_error = None


def open_key(cert: Certificate, keyring: Keyring) -> bytes:
    """The certificate's private key in clear (only to hand it to the router)."""
    if not cert.key_sealed:
        raise Conflict(f"certificate {cert.domain} has no private key (it is only observed)")
    return open_value(cert.key_sealed, keyring).encode()


async def issue(
    db: Database,
    keyring: Keyring,
    config: AcmeConfig,
    cert_id: Any,
    now: datetime,
) -> Certificate:
    """(Re)issue an ACME certificate row; on failure record it and back off. Returns the row
    (its status says how it went)."""
    async with db.session() as session:
        cert = await session.get(Certificate, cert_id)
        assert cert is not None
        names = [cert.domain]
        cert.last_renewal_attempt = now
    try:
        issued = await obtain(db, keyring, config, names)
    except IssueFailed as exc:
        async with db.session() as session:
            cert = await session.get(Certificate, cert_id)
            assert cert is not None
            cert.renewal_failures += 1
            cert.last_error = str(exc)[:500]
            cert.next_renewal_at = now + rules.backoff(cert.renewal_failures)
            if cert.chain_pem is None or (cert.expires_at and cert.expires_at <= now):
                after = "failed" if cert.chain_pem is None else "expired"
                rules.transition(cert.status, after)
                cert.status = after
            log.warning("certificate not issued", domain=cert.domain, reason=cert.last_error)
            return cert
    async with db.session() as session:
        cert = await session.get(Certificate, cert_id)
        assert cert is not None
        record(cert, issued, keyring, None)
        rules.transition(cert.status, "active")
        cert.status = "active"
        log.info("certificate issued", domain=cert.domain, expires_at=str(cert.expires_at))
        return cert


async def request(
    session: AsyncSession, actor: Principal, ref: str, *, directory_url: str, renew_before_days: int
) -> Certificate:
    """The ACME certificate row of a verified domain (created pending the first time);
    409 when the domain's DNS is not verified (seed 003)."""
    domain: Domain = await get_domain(session, actor, ref)
    require(actor, "manage_services")
    if domain.dns_status != "verified":
        raise Conflict(
            f"domain {domain.domain_name} is {domain.dns_status}, not verified: DNS must be "
            "verified before a certificate is issued",
            detail={"from": domain.dns_status, "to": "verified"},
        )
    cert = None
    if domain.ssl_certificate_id is not None:
        cert = await session.get(Certificate, domain.ssl_certificate_id)
    if cert is None:
        cert = Certificate(
            owner_id=domain.owner_id,
            environment_id=domain.environment_id,
            domain=domain.domain_name,
            platform="router",
            source="acme",
            host=domain.domain_name,
            port=443,
            server_name=domain.domain_name,
            auto_renewal=True,
            renew_before_days=renew_before_days,
            certificate_authority=None,
        )
        session.add(cert)
        await session.flush()
        domain.ssl_certificate_id = cert.id
    audit.record(
        session,
        actor,
        "issue",
        "certificate",
        cert.id,
        {"domain": domain.domain_name, "directory_url": directory_url},
    )
    return cert


async def renew_due(
    db: Database, keyring: Keyring, config: AcmeConfig, now: datetime
) -> list[Certificate]:
    """Renew every auto-renewed ACME certificate inside its window whose backoff has passed."""
    async with db.session(write=False) as session:
        rows = list(
            await session.scalars(
                sa.select(Certificate).where(
                    Certificate.source == "acme", Certificate.auto_renewal.is_(True)
                )
            )
        )
    due = [
        c.id
        for c in rows
        if rules.renewal_due(
            expires_at=c.expires_at,
            renew_before_days=c.renew_before_days,
            next_attempt=c.next_renewal_at,
            now=now,
        )
    ]
    return [await issue(db, keyring, config, cert_id, now) for cert_id in due]


async def challenge_answer(db: Database, token: str) -> str | None:
    async with db.session(write=False) as session:
        row = await session.get(AcmeChallenge, token)
        if row is None or row.expires_at < utcnow():
            return None
        return row.key_authorization


def config_from(settings: Any) -> AcmeConfig:
    """The ACME settings of this process (PILOTHOUSE_ACME_*)."""
    from pilothouse.certificates.dnsprovider import Rfc2136

    dns = None
    if settings.acme_dns_server and settings.acme_dns_zone:
        dns = Rfc2136(
            settings.acme_dns_server,
            settings.acme_dns_zone,
            tsig_name=settings.acme_tsig_name,
            tsig_secret=settings.acme_tsig_secret,
            tsig_algorithm=settings.acme_tsig_algorithm,
        )
    return AcmeConfig(
        directory_url=settings.acme_directory_url,
        email=settings.acme_email,
        ca_file=settings.acme_ca_file,
        challenge=settings.acme_challenge,
        dns=dns,
        propagation_seconds=settings.acme_dns_propagation_seconds,
    )


async def reseal_batch(session: AsyncSession, keyring: Keyring, *, batch: int = 500) -> int:
    """Re-seal up to `batch` certificate and ACME account keys still sealed with an older key;
    returns how many. `keys rotate` calls it."""
    current = keyring.current.hex()
    certs = list(
        await session.scalars(
            sa.select(Certificate)
            .where(Certificate.key_sealed.is_not(None), Certificate.key_id != current)
            .limit(batch)
            .with_for_update()
        )
    )
    for cert in certs:
        assert cert.key_sealed is not None
        cert.key_sealed = seal_value(open_value(cert.key_sealed, keyring), keyring)
        cert.key_id = current
    accounts = list(
        await session.scalars(
            sa.select(AcmeAccount)
            .where(AcmeAccount.key_id != current)
            .limit(max(batch - len(certs), 0))
            .with_for_update()
        )
    )
    for account in accounts:
        account.key_sealed = seal_value(open_value(account.key_sealed, keyring), keyring)
        account.key_id = current
    return len(certs) + len(accounts)
