"""Domains (seed 003 Domain Registry): register a custom domain for a service, say which DNS
records to create, verify them with dnspython against the system's or a configured resolver,
retry with backoff, and re-check verified domains (one that stops pointing to us is flagged).

Records: the domain must point to pilothouse's endpoint (PILOTHOUSE_DNS_TARGET, else the
environment's domain): a CNAME when that endpoint is a hostname, an A record when it is an IP
address; and a TXT record `_pilothouse.<domain>` holding `pilothouse-verification=<token>`
proves ownership. A CNAME flattened by the DNS host (ALIAS/ANAME at the apex) is accepted when
the domain's A records equal the endpoint's.

dns_status (seed 003): pending (nothing found yet) -> configured (one of the two records found)
-> verified (both); pending/configured -> failed after PILOTHOUSE_DOMAIN_MAX_ATTEMPTS checks;
verified -> failed when a re-check no longer finds it pointing to us; failed -> pending when
asked to verify again. Seed rule: DNS must be verified before a certificate is issued.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, visible
from pilothouse.audit import service as audit
from pilothouse.certificates.models import Domain
from pilothouse.core.db import Database, one_by_ref
from pilothouse.core.statemachine import Table, check_transition
from pilothouse.errors import Conflict, ValidationFailed
from pilothouse.services import service as services

TXT_PREFIX = "_pilothouse"
TXT_VALUE = "pilothouse-verification="

TRANSITIONS: Table = {
    "pending": frozenset({"configured", "verified", "failed"}),
    "configured": frozenset({"pending", "verified", "failed"}),
    "verified": frozenset({"failed"}),
    "failed": frozenset({"pending"}),
}

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


# -- pure rules -----------------------------------------------------------------------------


def normalize(name: str) -> str:
    """A lowercase fully qualified name without the trailing dot; ValueError when invalid."""
    name = name.strip().lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError("must be a domain name like api.example.com")
    if labels[-1].isdigit():
        raise ValueError("must be a domain name, not an address")
    return name


def split(name: str, root: str | None = None) -> tuple[str, str]:
    """(subdomain, root domain): the root is the last two labels unless given (a public
    suffix like co.uk needs `root`); the subdomain is what precedes it ("" at the apex)."""
    if root is None:
        root = ".".join(name.split(".")[-2:])
    root = normalize(root)
    if name == root:
        return "", root
    if not name.endswith("." + root):
        raise ValueError(f"{name} is not inside {root}")
    return name[: -len(root) - 1], root


def is_address(target: str) -> bool:
    try:
        ipaddress.ip_address(target)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Record:
    type: str
    name: str
    value: str


def records(domain_name: str, record_type: str, target: str, token: str) -> list[Record]:
    """The DNS records to create for a domain."""
    return [
        Record(record_type, domain_name, target),
        Record("TXT", f"{TXT_PREFIX}.{domain_name}", f"{TXT_VALUE}{token}"),
    ]


@dataclass(frozen=True)
class Lookup:
    """What the resolver answered for one domain."""

    cname: str | None = None
    addresses: frozenset[str] = frozenset()
    target_addresses: frozenset[str] = frozenset()
    txt: tuple[str, ...] = ()
    error: str | None = None


def points_to_us(record_type: str, target: str, found: Lookup) -> bool:
    if record_type == "A":
        return target in found.addresses
    if found.cname is not None:
        return found.cname.rstrip(".").lower() == target.rstrip(".").lower()
    return bool(found.addresses) and found.addresses == found.target_addresses


def owned(token: str, found: Lookup) -> bool:
    return f"{TXT_VALUE}{token}" in found.txt


def observed_status(points: bool, proves: bool) -> str:
    """pending / configured / verified from what the records say."""
    if points and proves:
        return "verified"
    return "configured" if points or proves else "pending"


def next_status(current: str, found: str, attempts: int, max_attempts: int) -> str:
    """The status after a check: verified stays verified only while it still resolves so
    (else failed: it stopped pointing to us); pending/configured fail after `max_attempts`."""
    if found == "verified":
        return "verified" if current != "failed" else current
    if current == "verified":
        return "failed"
    if current == "failed":
        return current
    return "failed" if attempts >= max_attempts else found


def retry_delay(attempts: int, *, base: float = 30.0, cap: float = 3600.0) -> timedelta:
    """Backoff between verification attempts: 30 s, 1 min, 2 min ... at most an hour."""
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), cap))


def explain(domain: Domain, found: Lookup) -> str | None:
    """What is still missing, in one line (None when verified)."""
    problems = []
    if not points_to_us(domain.record_type, domain.record_target, found):
        seen = found.cname or ", ".join(sorted(found.addresses)) or "nothing"
        problems.append(
            f"{domain.record_type} {domain.domain_name} -> {domain.record_target} "
            f"not found (saw {seen})"
        )
    if not owned(domain.txt_token, found):
        problems.append(f"TXT {TXT_PREFIX}.{domain.domain_name} not found")
    if found.error:
        problems.append(found.error)
    return "; ".join(problems)[:500] or None


# -- the resolver ---------------------------------------------------------------------------


class Resolver:
    """dnspython's async resolver: the system's, or one server (host or host:port)."""

    def __init__(self, server: str | None = None, *, timeout: float = 3.0) -> None:
        if server:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            self.resolver = dns.asyncresolver.Resolver(configure=False)
            self.resolver.nameservers = [host]
            self.resolver.port = int(port) if port else 53
        else:
            self.resolver = dns.asyncresolver.Resolver()
        self.resolver.lifetime = timeout
        self.resolver.cache = None

    @classmethod
    def from_setting(cls, server: str | None) -> Resolver:
        return cls(server)

    async def _answer(self, name: str, rdtype: str) -> list[str]:
        try:
            answer = await self.resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
            return []
        if answer.rrset is None:
            return []
        if rdtype == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset]
        return [r.to_text() for r in answer.rrset]

    async def lookup(self, domain_name: str, record_type: str, target: str) -> Lookup:
        try:
            cnames = await self._answer(domain_name, "CNAME")
            addresses = await self._answer(domain_name, "A")
            txt = await self._answer(f"{TXT_PREFIX}.{domain_name}", "TXT")
            target_addresses: list[str] = []
            if record_type == "CNAME" and not cnames and addresses:
                target_addresses = await self._answer(target, "A")
        except dns.exception.DNSException as exc:
            return Lookup(error=f"DNS lookup failed: {type(exc).__name__}")
        return Lookup(
            cname=cnames[0] if cnames else None,
            addresses=frozenset(addresses),
            target_addresses=frozenset(target_addresses),
            txt=tuple(txt),
        )


# -- the store ------------------------------------------------------------------------------


def _visible(actor: Principal) -> sa.ColumnElement[bool]:
    return visible(actor, Domain.owner_id, Domain.environment_id)


async def add_domain(
    session: AsyncSession,
    actor: Principal,
    name: str,
    *,
    service: str,
    environment: str | None = None,
    root: str | None = None,
    cdn_enabled: bool = False,
    target: str | None = None,
    now: datetime,
) -> Domain:
    """Register a domain for a service (operator): pending, with its records to create."""
    require(actor, "manage_services")
    try:
        domain_name = normalize(name)
    except ValueError as exc:
        raise ValidationFailed("domain", str(exc)) from None
    try:
        subdomain, root_domain = split(domain_name, root)
    except ValueError as exc:
        raise ValidationFailed("root", str(exc)) from None
    svc = await services.get_service(session, actor, service, environment=environment)
    from pilothouse.environments.models import Environment

    env = await session.get(Environment, svc.environment_id)
    endpoint = (target or (env.domain if env else None) or "").strip().rstrip(".").lower()
    if not endpoint:
        raise ValidationFailed(
            "target",
            "no endpoint to point to: set PILOTHOUSE_DNS_TARGET or the environment's domain",
        )
    if await session.scalar(sa.select(Domain.id).where(Domain.domain_name == domain_name)):
        raise Conflict(f"domain {domain_name} is already registered")
    domain = Domain(
        owner_id=actor.id,
        environment_id=svc.environment_id,
        service_id=svc.id,
        domain_name=domain_name,
        subdomain=subdomain,
        root_domain=root_domain,
        app_target=svc.name,
        platform_target="router",
        cdn_enabled=cdn_enabled,
        record_type="A" if is_address(endpoint) else "CNAME",
        record_target=endpoint,
        txt_token=secrets.token_hex(16),
        next_check_at=now,
        created_at=now,
    )
    session.add(domain)
    await session.flush()
    audit.record(
        session,
        actor,
        "create",
        "domain",
        domain.id,
        {"domain_name": domain_name, "service": svc.name, "record_target": endpoint},
    )
    return domain


async def list_domains(session: AsyncSession, actor: Principal) -> Sequence[Domain]:
    query = sa.select(Domain).where(_visible(actor)).order_by(Domain.domain_name)
    return (await session.scalars(query)).all()


async def get_domain(session: AsyncSession, actor: Principal, ref: str) -> Domain:
    query = sa.select(Domain).where(_visible(actor))
    ref = ref.lower().rstrip(".")
    domain: Domain = await one_by_ref(
        session, query, Domain.id, ref, "domain", name_column=Domain.domain_name
    )
    return domain


async def remove_domain(session: AsyncSession, actor: Principal, ref: str) -> None:
    domain = await get_domain(session, actor, ref)
    require(actor, "manage_services")
    await session.delete(domain)
    audit.record(session, actor, "delete", "domain", domain.id, {"domain_name": domain.domain_name})


def apply(
    domain: Domain, found: Lookup, now: datetime, *, recheck: timedelta, max_attempts: int
) -> tuple[str, str]:
    """Record a lookup on the row and schedule the next one; (before, after)."""
    before = domain.dns_status
    domain.attempts += 1
    domain.last_checked_at = now
    seen = observed_status(
        points_to_us(domain.record_type, domain.record_target, found),
        owned(domain.txt_token, found),
    )
    after = next_status(before, seen, domain.attempts, max_attempts)
    if after != before:
        check_transition(TRANSITIONS, "domain", before, after)
    domain.dns_status = after
    if after == "verified":
        domain.last_error = None
        if before != "verified":
            domain.verified_at = now
        domain.next_check_at = now + recheck
    elif after == "failed":
        problem = explain(domain, found) or "not verified"
        domain.last_error = (
            f"stopped pointing to us: {problem}" if before == "verified" else problem
        )[:500]
        domain.next_check_at = None
    else:
        domain.last_error = explain(domain, found)
        domain.next_check_at = now + retry_delay(domain.attempts)
    return before, after


async def verify_now(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    resolver: Resolver,
    now: datetime,
    *,
    recheck: timedelta,
    max_attempts: int,
) -> Domain:
    """Check a domain's records now (operator); a failed domain starts over from pending."""
    domain = await get_domain(session, actor, ref)
    require(actor, "manage_services")
    if domain.dns_status == "failed":
        check_transition(TRANSITIONS, "domain", "failed", "pending")
        domain.dns_status = "pending"
        domain.attempts = 0
    found = await resolver.lookup(domain.domain_name, domain.record_type, domain.record_target)
    before, after = apply(domain, found, now, recheck=recheck, max_attempts=max_attempts)
    audit.record(session, actor, "verify", "domain", domain.id, {"from": before, "to": after})
    return domain


async def verify_due(
    db: Database,
    now: datetime,
    resolver: Resolver,
    *,
    recheck_hours: float,
    max_attempts: int,
) -> list[tuple[Domain, str, str]]:
    """Check every domain whose next check is due; (domain, before, after) each."""
    async with db.session() as session:
        due = list(
            await session.scalars(
                sa.select(Domain)
                .where(Domain.next_check_at.is_not(None), Domain.next_check_at <= now)
                .limit(500)
            )
        )
        done = []
        for domain in due:
            found = await resolver.lookup(
                domain.domain_name, domain.record_type, domain.record_target
            )
            before, after = apply(
                domain,
                found,
                now,
                recheck=timedelta(hours=recheck_hours),
                max_attempts=max_attempts,
            )
            done.append((domain, before, after))
    return done


def lost_message(domain: Domain) -> dict[str, Any]:
    return {
        "event": "domain_lost",
        "severity": "warning",
        "domain_id": str(domain.id),
        "domain": domain.domain_name,
        "text": f"domain {domain.domain_name} no longer verifies: {domain.last_error}",
    }


def instructions(domain: Domain) -> list[dict[str, str]]:
    return [
        {"type": r.type, "name": r.name, "value": r.value}
        for r in records(
            domain.domain_name, domain.record_type, domain.record_target, domain.txt_token
        )
    ]
