"""Custom domains at the nginx router: every verified domain is served on
PILOTHOUSE_ROUTER_HTTP_PORT (the ACME HTTP-01 path proxied to pilothouse's API); once its
certificate is active, a TLS server (SNI) on PILOTHOUSE_ROUTER_HTTPS_PORT serves it and HTTP
redirects there.

The chain and the private key (opened from its sealed copy) are written under
<data_dir>/nginx/tls (directory 0700, key files 0600), only when they changed; the router then
reloads gracefully, so a renewal swaps the certificate without a failed request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pilothouse.certificates.issue import open_key
from pilothouse.certificates.models import Certificate, Domain
from pilothouse.core.crypto import Keyring
from pilothouse.core.db import Database
from pilothouse.drivers.nginx import NginxRouter, Site, TlsSettings


def tls_settings(settings: Any) -> TlsSettings:
    return TlsSettings(
        https_port=settings.router_https_port,
        http_port=settings.router_http_port,
        bind=settings.router_tls_bind,
        hsts=settings.router_hsts,
        hsts_max_age=settings.router_hsts_max_age,
        challenges=f"{settings.host}:{settings.port}",
    )


def _write(path: Path, content: bytes, mode: int) -> bool:
    """Write `content` atomically unless the file already holds it; whether it changed."""
    if path.exists() and path.read_bytes() == content:
        return False
    temporary = path.with_suffix(path.suffix + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    os.replace(temporary, path)
    return True


async def sync(db: Database, keyring: Keyring, router: NginxRouter, tls: TlsSettings) -> int:
    """Bring the router's TLS sites in line with the store; how many sites are served."""
    async with db.session(write=False) as session:
        rows = (
            await session.execute(
                sa.select(Domain, Certificate)
                .outerjoin(Certificate, Domain.ssl_certificate_id == Certificate.id)
                .where(Domain.dns_status == "verified")
            )
        ).all()
    directory = router.root / "tls"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    sites, changed = [], False
    for domain, cert in rows:
        if cert is None or cert.status != "active" or not cert.chain_pem or not cert.key_sealed:
            sites.append(Site(domain.domain_name, str(domain.service_id)))
            continue
        pem, key = directory / f"{domain.domain_name}.pem", directory / f"{domain.domain_name}.key"
        changed |= _write(key, open_key(cert, keyring), 0o600)
        changed |= _write(pem, cert.chain_pem.encode(), 0o644)
        sites.append(Site(domain.domain_name, str(domain.service_id), str(pem), str(key)))
    if not await router.set_sites(sites, tls) and changed:
        await router.reload()
    return len(sites)
