"""/api/v1/certificates and /api/v1/domains: track and check certificates; register and
verify domains."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Path, Request, Response

from pilothouse.access import require
from pilothouse.certificates import domains, issue, rules, service
from pilothouse.certificates.models import Certificate, Domain
from pilothouse.certificates.observe import client_context
from pilothouse.certificates.schemas import (
    CertificateRead,
    CertificateTrack,
    CertificateUpdate,
    DomainAdd,
    DomainRead,
)
from pilothouse.core.clock import utcnow
from pilothouse.deps import Caller, Keys, Session, get_db
from pilothouse.errors import ERROR_RESPONSES, NotFound

router = APIRouter(tags=["certificates"])
#: Served at the application's root: ACME HTTP-01 answers (the router proxies the path here).
challenges = APIRouter(tags=["certificates"])
Ref = Path(min_length=1, max_length=253, description="Id, id prefix, or domain name.")


def cert_read(cert: Certificate) -> CertificateRead:
    read = CertificateRead.model_validate(cert)
    if cert.expires_at is not None:
        read.days_left = rules.days_left(cert.expires_at, utcnow())
    return read


def domain_read(domain: Domain) -> DomainRead:
    return DomainRead.model_validate(
        {
            **{c: getattr(domain, c) for c in DomainRead.model_fields if c != "records"},
            "records": domains.instructions(domain),
        }
    )


@router.get("/certificates", response_model=list[CertificateRead], summary="List certificates")
async def list_certificates(session: Session, caller: Caller) -> list[CertificateRead]:
    return [cert_read(c) for c in await service.list_certificates(session, caller)]


@router.post(
    "/certificates",
    response_model=CertificateRead,
    status_code=201,
    summary="Track the certificate of a TLS endpoint (checked by a real handshake now)",
)
async def track(
    body: CertificateTrack, request: Request, session: Session, caller: Caller
) -> CertificateRead:
    cert = await service.track(
        session,
        caller,
        host=body.host,
        port=body.port,
        server_name=body.server_name,
        starttls=body.starttls,
        environment=body.environment,
        alert_days=body.alert_days,
    )
    ca_file = request.app.state.settings.certs_ca_file
    await service.check(session, [cert], utcnow(), context=client_context(ca_file))
    return cert_read(cert)


@router.get("/certificates/{ref}", response_model=CertificateRead, summary="Show a certificate")
async def show(session: Session, caller: Caller, ref: str = Ref) -> CertificateRead:
    return cert_read(await service.get_certificate(session, caller, ref))


@router.patch(
    "/certificates/{ref}",
    response_model=CertificateRead,
    summary="Change a certificate's alert levels or renewal settings",
)
async def update(
    body: CertificateUpdate, session: Session, caller: Caller, ref: str = Ref
) -> CertificateRead:
    cert = await service.update(
        session,
        caller,
        ref,
        alert_days=body.alert_days,
        auto_renewal=body.auto_renewal,
        renew_before_days=body.renew_before_days,
    )
    return cert_read(cert)


@router.post(
    "/certificates/{ref}/renew",
    response_model=CertificateRead,
    summary="Renew an ACME certificate now; check an observed one again (a renewal made "
    "elsewhere shows up)",
)
async def renew(
    request: Request, session: Session, caller: Caller, keyring: Keys, ref: str = Ref
) -> CertificateRead:
    settings = request.app.state.settings
    cert = await service.get_certificate(session, caller, ref)
    if cert.source == "acme":
        require(caller, "manage_services")
        await session.commit()
        await issue.issue(get_db(request), keyring, issue.config_from(settings), cert.id, utcnow())
        await session.refresh(cert)
        return cert_read(cert)
    cert = await service.recheck(session, caller, ref, utcnow(), ca_file=settings.certs_ca_file)
    return cert_read(cert)


@router.delete("/certificates/{ref}", status_code=204, summary="Stop tracking a certificate")
async def untrack(session: Session, caller: Caller, ref: str = Ref) -> Response:
    await service.untrack(session, caller, ref)
    return Response(status_code=204)


@router.get("/domains", response_model=list[DomainRead], summary="List domains")
async def list_domains(session: Session, caller: Caller) -> list[DomainRead]:
    return [domain_read(d) for d in await domains.list_domains(session, caller)]


@router.post(
    "/domains",
    response_model=DomainRead,
    status_code=201,
    summary="Register a domain for a service; the answer lists the DNS records to create",
)
async def add_domain(
    body: DomainAdd, request: Request, session: Session, caller: Caller
) -> DomainRead:
    domain = await domains.add_domain(
        session,
        caller,
        body.domain,
        service=body.service,
        environment=body.environment,
        root=body.root,
        cdn_enabled=body.cdn_enabled,
        target=request.app.state.settings.dns_target,
        now=utcnow(),
    )
    return domain_read(domain)


@router.get("/domains/{ref}", response_model=DomainRead, summary="Show a domain")
async def show_domain(session: Session, caller: Caller, ref: str = Ref) -> DomainRead:
    return domain_read(await domains.get_domain(session, caller, ref))


@router.post(
    "/domains/{ref}/verify",
    response_model=DomainRead,
    summary="Resolve a domain's records now (a failed domain starts over from pending)",
)
async def verify(request: Request, session: Session, caller: Caller, ref: str = Ref) -> DomainRead:
    settings = request.app.state.settings
    domain = await domains.verify_now(
        session,
        caller,
        ref,
        domains.Resolver(settings.dns_resolver),
        utcnow(),
        recheck=timedelta(hours=settings.domain_recheck_hours),
        max_attempts=settings.domain_max_attempts,
    )
    return domain_read(domain)


@router.delete("/domains/{ref}", status_code=204, summary="Remove a domain")
async def remove_domain(session: Session, caller: Caller, ref: str = Ref) -> Response:
    await domains.remove_domain(session, caller, ref)
    return Response(status_code=204)


@router.post(
    "/domains/{ref}/certificate",
    response_model=CertificateRead,
    summary="Issue (or reissue) a certificate for a verified domain from the ACME directory",
)
async def issue_certificate(
    request: Request, session: Session, caller: Caller, keyring: Keys, ref: str = Ref
) -> CertificateRead:
    settings = request.app.state.settings
    cert = await issue.request(
        session,
        caller,
        ref,
        directory_url=settings.acme_directory_url,
        renew_before_days=settings.acme_renew_before_days,
    )
    await session.commit()  # the worker-free issuance below uses its own sessions
    await issue.issue(get_db(request), keyring, issue.config_from(settings), cert.id, utcnow())
    await session.refresh(cert)
    return cert_read(cert)


@challenges.get(
    "/.well-known/acme-challenge/{token}",
    summary="ACME HTTP-01 challenge answers (no token needed; the CA fetches them)",
    response_class=Response,
    responses={
        200: {
            "description": "The key authorization, as text.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **{k: ERROR_RESPONSES[k] for k in (404, 422)},
    },
)
async def challenge(
    request: Request,
    token: str = Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$"),
) -> Response:
    answer = await issue.challenge_answer(get_db(request), token)
    if answer is None:
        raise NotFound("no such challenge")
    return Response(answer, media_type="text/plain")
