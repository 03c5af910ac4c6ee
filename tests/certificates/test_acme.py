"""ACME end to end against a real pebble (one store: the store is not what is tested here).

A domain is registered and verified on the loopback DNS server (which also answers pebble's
lookups), a certificate is refused before verification (seed 003), then issued over HTTP-01
(pebble fetches /.well-known/acme-challenge/<token> from the live pilothouse API), renewed on
demand (a new certificate), and a second one issued over DNS-01 through the RFC 2136 provider.
Keys are stored sealed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pilothouse.certificates import issue
from pilothouse.certificates.dnsprovider import Rfc2136
from pilothouse.certificates.models import AcmeAccount, Certificate
from pilothouse.config import Settings
from pilothouse.core.crypto import load_keyring
from pilothouse.core.db import Database
from tests.certificates.pebble import Pebble, available
from tests.certificates.support import DnsServer
from tests.conftest import LiveServer, one_store

pytestmark = pytest.mark.skipif(
    not available(), reason="Debian's pebble is not installed (./dev test installs it)"
)

TARGET = "edge.pilothouse.test"


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer(default_a="127.0.0.1")
    yield server
    server.close()


@one_store
def test_issue_renew_and_dns01_with_pebble(
    db_url: str, admin_token: str, tmp_path: Path, dns_server: DnsServer
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        role="api",
        dns_resolver=dns_server.address,
        dns_target=TARGET,
    )
    with LiveServer(settings) as server:
        pebble = Pebble(tmp_path, http_port=server.port, dns_address=dns_server.address)
        try:
            settings.acme_directory_url = pebble.directory
            settings.acme_ca_file = pebble.ca_file
            headers = {"Authorization": f"Bearer {admin_token}"}
            with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=60) as c:
                c.post("/environments", json={"name": "prod", "type": "production"})
                c.post("/services", json={"environment": "prod", "name": "web", "command": "x"})
                domain = c.post("/domains", json={"domain": "api.example.test", "service": "web"})
                assert domain.status_code == 201, domain.text
                refused = c.post("/domains/api.example.test/certificate")
                assert refused.status_code == 409 and "not verified" in refused.text

                _, txt = domain.json()["records"]
                dns_server.set("api.example.test", "CNAME", f"{TARGET}.")
                dns_server.set(txt["name"], "TXT", txt["value"])
                verified = c.post("/domains/api.example.test/verify").json()
                assert verified["dns_status"] == "verified"

                issued = c.post("/domains/api.example.test/certificate")
                assert issued.status_code == 200, issued.text
                cert = issued.json()
                assert cert["status"] == "active", cert["last_error"]
                assert cert["source"] == "acme" and cert["platform"] == "router"
                assert cert["sans"] == ["api.example.test"] and cert["auto_renewal"]
                assert "Pebble" in cert["issuer"]
                shown = c.get("/domains/api.example.test").json()
                assert shown["ssl_certificate_id"] == cert["id"]

                renewed = c.post(f"/certificates/{cert['id']}/renew").json()
                assert renewed["status"] == "active"
                assert renewed["certificate_hash"] != cert["certificate_hash"]
                assert renewed["last_renewal_attempt"] is not None

            async def dns01() -> tuple[issue.Issued, list[str]]:
                db = Database(db_url)
                try:
                    keyring = load_keyring(None, settings.master_key_path)
                    config = issue.AcmeConfig(
                        directory_url=pebble.directory,
                        ca_file=pebble.ca_file,
                        challenge="dns-01",
                        dns=Rfc2136(dns_server.address, "example.test"),
                    )
                    got = await issue.obtain(db, keyring, config, ["dns.example.test"])
                    async with db.session(write=False) as session:
                        sealed = list(await session.scalars(sa.select(Certificate.key_sealed)))
                        sealed += list(await session.scalars(sa.select(AcmeAccount.key_sealed)))
                    return got, [s for s in sealed if s]
                finally:
                    await db.dispose()

            got, sealed = asyncio.run(dns01())
            assert got.fields["sans"] == ["dns.example.test"]
            assert dns_server.updates == 2  # published, then removed
            assert dns_server.records[("_acme-challenge.dns.example.test", "TXT")] == []
            assert sealed and not any("PRIVATE KEY" in s for s in sealed)
        finally:
            pebble.close()
