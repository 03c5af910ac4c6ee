"""Domains end to end on a tiny loopback DNS server: add a domain for a service and get the
records to create, see it pending, create them one by one (configured, then verified), lose the
CNAME and see the daily re-check flag it (failed); retries with backoff until failed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pilothouse.alerts import service as alerts
from pilothouse.certificates import domains
from pilothouse.certificates.loops import CertLoops
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.core.loops import Runtime
from tests.alerts.test_channels import Receiver
from tests.certificates.support import DnsServer
from tests.conftest import Api, one_store

TARGET = "edge.pilothouse.test"


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    yield server
    server.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path, dns_server: DnsServer) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        role="api",
        dns_resolver=dns_server.address,
        dns_target=TARGET,
        domain_max_attempts=3,
    )


@one_store
def test_add_verify_and_lose_a_domain(
    api: Api, world: dict[str, Any], dns_server: DnsServer, settings: Settings, db_url: str
) -> None:
    domain = api.ok(api.post("/domains", {"domain": "API.example.test", "service": "web"}), 201)
    assert domain["domain_name"] == "api.example.test"
    assert (domain["subdomain"], domain["root_domain"]) == ("api", "example.test")
    assert domain["app_target"] == "web" and domain["dns_status"] == "pending"
    cname, txt = domain["records"]
    assert cname == {"type": "CNAME", "name": "api.example.test", "value": TARGET}
    assert txt["name"] == "_pilothouse.api.example.test"
    assert txt["value"].startswith("pilothouse-verification=")

    again = api.post("/domains", {"domain": "api.example.test", "service": "web"})
    assert again.status_code == 409
    bad = api.post("/domains", {"domain": "not a domain", "service": "web"})
    assert bad.status_code == 422 and "domain" in bad.text

    checked = api.ok(api.post("/domains/api.example.test/verify"))
    assert checked["dns_status"] == "pending" and "not found" in checked["last_error"]

    dns_server.set("api.example.test", "CNAME", f"{TARGET}.")
    checked = api.ok(api.post("/domains/api.example.test/verify"))
    assert checked["dns_status"] == "configured"
    assert "TXT _pilothouse.api.example.test not found" in checked["last_error"]

    dns_server.set("_pilothouse.api.example.test", "TXT", txt["value"])
    checked = api.ok(api.post(f"/domains/{domain['id'][:8]}/verify"))
    assert checked["dns_status"] == "verified" and checked["verified_at"]
    assert checked["last_error"] is None

    # The record goes away: the next (daily) re-check flags it and alerts once.
    dns_server.records.pop(("api.example.test", "CNAME"))

    receiver = Receiver(204)
    channel = {"name": "oncall", "kind": "webhook", "config": {"url": receiver.url}}
    api.ok(api.post("/channels", channel), 201)

    async def recheck() -> tuple[int, int]:
        db = Database(db_url)
        try:
            loops = CertLoops(Runtime(db, settings, Leases(db, owner="w1")))
            later = utcnow() + timedelta(hours=25)  # the daily re-check is due
            checked = await loops.verify(later)
            again = await loops.verify(later + timedelta(hours=25))  # failed: not re-checked
            await alerts.settle()
            return checked, again
        finally:
            await db.dispose()

    try:
        assert asyncio.run(recheck()) == (1, 0)
        [alert] = receiver.bodies
    finally:
        receiver.close()
    assert alert["event"] == "domain_lost" and alert["domain"] == "api.example.test"
    assert "stopped pointing to us" in alert["text"]
    lost = api.ok(api.get("/domains/api.example.test"))
    assert lost["dns_status"] == "failed"
    assert lost["last_error"].startswith("stopped pointing to us")

    api.ok(api.delete("/domains/api.example.test"), 204)
    assert api.get("/domains/api.example.test").status_code == 404


@one_store
def test_pending_domains_retry_with_backoff_then_fail(
    api: Api, world: dict[str, Any], settings: Settings, db_url: str
) -> None:
    api.ok(api.post("/domains", {"domain": "shop.example.test", "service": "web"}), 201)

    async def attempts() -> list[tuple[str, str, Any]]:
        db = Database(db_url)
        resolver = domains.Resolver(settings.dns_resolver)
        seen = []
        try:
            now = utcnow()
            for _ in range(4):
                found = await domains.verify_due(
                    db, now, resolver, recheck_hours=24, max_attempts=3
                )
                for domain, _before, after in found:
                    seen.append((after, domain.attempts, domain.next_check_at))
                now += timedelta(hours=2)
        finally:
            await db.dispose()
        return seen

    seen = asyncio.run(attempts())
    assert [s[0] for s in seen] == ["pending", "pending", "failed"]
    assert seen[-1][2] is None  # a failed domain is not checked again until asked
