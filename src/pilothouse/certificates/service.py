"""Certificates: track an endpoint, check it by real handshakes, list and show, untrack;
the expiry and failure alerts (each claimed once in job_slots across workers).

Certificates are owned records: a non-admin sees the ones they own and those in environments
granted to them; anything else is 404.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, visible
from pilothouse.audit import service as audit
from pilothouse.certificates import rules
from pilothouse.certificates.models import DEFAULT_ALERT_DAYS, Certificate
from pilothouse.certificates.observe import Seen, client_context, observe
from pilothouse.core.db import Database, one_by_ref
from pilothouse.core.leases import Leases
from pilothouse.environments import service as environments
from pilothouse.errors import Conflict, ValidationFailed

#: Job names of the alert claims: one per (certificate, level, expiry); one per failure streak.
EXPIRY_JOB = "certs.expiry"
FAILURE_JOB = "certs.failure"


def _visible(actor: Principal) -> sa.ColumnElement[bool]:
    return visible(actor, Certificate.owner_id, Certificate.environment_id)


async def track(
    session: AsyncSession,
    actor: Principal,
    *,
    host: str,
    port: int = 443,
    server_name: str | None = None,
    starttls: str = "none",
    environment: str | None = None,
    alert_days: Sequence[int] | None = None,
) -> Certificate:
    """Start tracking the certificate served at host:port (operator); pending until checked."""
    require(actor, "manage_services")
    env_id = None
    if environment:
        env_id = (await environments.get_environment(session, actor, environment)).id
    name = (server_name or host).lower()
    if await session.scalar(
        sa.select(Certificate.id).where(
            Certificate.host == host, Certificate.port == port, Certificate.server_name == name
        )
    ):
        raise Conflict(f"{name} at {host}:{port} is already tracked")
    cert = Certificate(
        owner_id=actor.id,
        environment_id=env_id,
        domain=name,
        host=host,
        port=port,
        server_name=name,
        starttls=starttls,
        platform="external",
        alert_days=_levels(alert_days),
    )
    session.add(cert)
    await session.flush()
    audit.record(
        session,
        actor,
        "create",
        "certificate",
        cert.id,
        {"host": host, "port": port, "server_name": name, "alert_days": cert.alert_days},
    )
    return cert


def _levels(alert_days: Sequence[int] | None) -> list[int]:
    try:
        return rules.normalize_levels(alert_days if alert_days else DEFAULT_ALERT_DAYS)
    except ValueError as exc:
        raise ValidationFailed("alert_days", str(exc)) from None


async def list_certificates(session: AsyncSession, actor: Principal) -> Sequence[Certificate]:
    query = sa.select(Certificate).where(_visible(actor))
    return (await session.scalars(query.order_by(Certificate.domain, Certificate.port))).all()


async def get_certificate(session: AsyncSession, actor: Principal, ref: str) -> Certificate:
    """By id, unique id prefix, or domain (409 when a domain is tracked at several endpoints)."""
    query = sa.select(Certificate).where(_visible(actor))
    cert: Certificate = await one_by_ref(
        session, query, Certificate.id, ref, "certificate", name_column=Certificate.domain
    )
    return cert


async def update(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    *,
    alert_days: Sequence[int] | None = None,
    auto_renewal: bool | None = None,
    renew_before_days: int | None = None,
) -> Certificate:
    cert = await get_certificate(session, actor, ref)
    require(actor, "manage_services")
    changes: dict[str, Any] = {}
    if alert_days is not None:
        cert.alert_days = changes["alert_days"] = _levels(alert_days)
    if auto_renewal is not None:
        cert.auto_renewal = changes["auto_renewal"] = auto_renewal
    if renew_before_days is not None:
        cert.renew_before_days = changes["renew_before_days"] = renew_before_days
    audit.record(session, actor, "update", "certificate", cert.id, changes)
    return cert


async def untrack(session: AsyncSession, actor: Principal, ref: str) -> None:
    cert = await get_certificate(session, actor, ref)
    require(actor, "manage_services")
    await session.delete(cert)
    audit.record(session, actor, "delete", "certificate", cert.id, {"domain": cert.domain})


# -- checking -------------------------------------------------------------------------------


def apply(cert: Certificate, seen: Seen, now: datetime) -> tuple[str, str]:
    """Record an observation on the row; (status before, status after)."""
    before = cert.status
    cert.last_checked_at = now
    if seen.handshake_ok:
        cert.issuer = seen.issuer
        cert.subject = seen.subject
        cert.sans = list(seen.sans)
        cert.certificate_authority = seen.authority
        cert.issued_at = seen.not_before
        cert.expires_at = seen.not_after
        cert.certificate_hash = seen.sha256
        cert.chain_valid = seen.chain_valid
        cert.chain_error = seen.chain_error
        cert.last_error = None
    else:
        cert.last_error = (seen.error or "handshake failed")[:500]
    after = rules.status_of(
        handshake_ok=seen.handshake_ok,
        chain_valid=cert.chain_valid if seen.handshake_ok else None,
        expires_at=cert.expires_at if seen.handshake_ok else None,
        now=now,
    )
    rules.transition(before, after)
    cert.status = after
    return before, after


async def observe_many(
    certs: Sequence[Certificate],
    *,
    context: ssl.SSLContext | None = None,
    concurrency: int = 50,
    timeout: float = 5.0,
) -> list[Seen]:
    """Handshake with every certificate's endpoint, at most `concurrency` at once."""
    context = context or client_context()
    gate = asyncio.Semaphore(concurrency)

    async def one(cert: Certificate) -> Seen:
        async with gate:
            return await observe(
                cert.host,
                cert.port,
                server_name=cert.server_name,
                starttls=cert.starttls,
                timeout=timeout,
                context=context,
            )

    return list(await asyncio.gather(*(one(c) for c in certs)))


async def check(
    session: AsyncSession,
    certs: Sequence[Certificate],
    now: datetime,
    *,
    context: ssl.SSLContext | None = None,
) -> list[tuple[Certificate, str, str]]:
    """Handshake with these certificates' endpoints and record what was seen on the rows;
    (certificate, before, after) for each."""
    seen = await observe_many(certs, context=context)
    return [(c, *apply(c, s, now)) for c, s in zip(certs, seen, strict=True)]


async def check_due(
    db: Database, now: datetime, every_minutes: float, *, ca_file: str | None = None
) -> int:
    """Check the observed certificates not checked for `every_minutes`; how many. The
    handshakes run outside any transaction (a SQLite store stays writable meanwhile); what
    they saw is written in one transaction after."""
    cutoff = now - timedelta(minutes=every_minutes)
    async with db.session(write=False) as session:
        certs = list(
            await session.scalars(
                sa.select(Certificate)
                .where(
                    Certificate.source == "observed",
                    sa.or_(
                        Certificate.last_checked_at.is_(None),
                        Certificate.last_checked_at <= cutoff,
                    ),
                )
                .limit(5000)
            )
        )
    if not certs:
        return 0
    seen = await observe_many(certs, context=client_context(ca_file))
    async with db.session() as session:
        rows = {
            row.id: row
            for row in await session.scalars(
                sa.select(Certificate).where(Certificate.id.in_([c.id for c in certs]))
            )
        }
        for cert, found in zip(certs, seen, strict=True):
            if cert.id in rows:  # untracked meanwhile: nothing to record
                apply(rows[cert.id], found, now)
    return len(certs)


# -- alerts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    certificate_id: uuid.UUID
    message: dict[str, Any]


async def alerts_due(db: Database, leases: Leases, now: datetime) -> list[Notice]:
    """The expiry and failure alerts due now, each claimed so it is sent once across workers:
    one per certificate, level and expiry date (a renewed certificate starts its levels over);
    one failure alert per certificate version (its expiry date)."""
    async with db.session(write=False) as session:
        certs = list(
            await session.scalars(sa.select(Certificate).where(Certificate.expires_at.is_not(None)))
        )
        failed = list(
            await session.scalars(
                sa.select(Certificate).where(
                    sa.or_(Certificate.status == "failed", Certificate.renewal_failures > 0)
                )
            )
        )
    notices: list[Notice] = []
    for cert in certs:
        assert cert.expires_at is not None
        days = rules.days_left(cert.expires_at, now)
        level = rules.due_level(days, cert.alert_days or DEFAULT_ALERT_DAYS)
        if level is None:
            continue
        key = f"{cert.id}:{level}"
        if await leases.claim_slot(EXPIRY_JOB, key, cert.expires_at.replace(microsecond=0)):
            notices.append(Notice(cert.id, expiry_message(cert, days, level)))
    for cert in failed:
        # Once per certificate version (its expiry), or per row while none was ever seen.
        slot = (cert.expires_at or cert.created_at).replace(microsecond=0)
        if await leases.claim_slot(FAILURE_JOB, str(cert.id), slot):
            notices.append(Notice(cert.id, failure_message(cert)))
    return notices


def expiry_message(cert: Certificate, days: int, level: int) -> dict[str, Any]:
    assert cert.expires_at is not None
    when = f"{cert.expires_at:%Y-%m-%d %H:%M} UTC"
    text = (
        f"certificate for {cert.domain} ({cert.host}:{cert.port}) expired at {when}"
        if level == 0
        else f"certificate for {cert.domain} ({cert.host}:{cert.port}) expires in {days} "
        f"days, at {when} ({level}-day alert)"
    )
    return {
        "event": "certificate_expired" if level == 0 else "certificate_expiring",
        "severity": "warning",
        "certificate_id": str(cert.id),
        "domain": cert.domain,
        "expires_at": cert.expires_at.isoformat(),
        "days_left": days,
        "level": level,
        "text": text,
    }


def failure_message(cert: Certificate) -> dict[str, Any]:
    what = "renewal failed" if cert.renewal_failures else "check failed"
    return {
        "event": "certificate_renewal_failed" if cert.renewal_failures else "certificate_failed",
        "severity": "warning",
        "certificate_id": str(cert.id),
        "domain": cert.domain,
        "error": cert.last_error or cert.chain_error,
        "text": f"certificate for {cert.domain}: {what}: "
        f"{cert.last_error or cert.chain_error or 'unknown reason'}",
    }


async def recheck(
    session: AsyncSession, actor: Principal, ref: str, now: datetime, *, ca_file: str | None
) -> Certificate:
    """Handshake with a certificate's endpoint now (operator) and record what is served."""
    cert = await get_certificate(session, actor, ref)
    require(actor, "manage_services")
    [(_, before, after)] = await check(session, [cert], now, context=client_context(ca_file))
    audit.record(session, actor, "check", "certificate", cert.id, {"from": before, "to": after})
    return cert
