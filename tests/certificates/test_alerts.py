"""Expiry and failure alerts: a tracked endpoint whose certificate expires in 6 days produces
exactly one 7-day alert (claimed once across workers, on both stores), an untrusted one a
single failure alert; neither is downtime (the rules' tests show the health side)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import trustme

from pilothouse.access import Principal
from pilothouse.alerts import service as alerts
from pilothouse.certificates import service
from pilothouse.certificates.loops import CertLoops
from pilothouse.certificates.models import AcmeAccount, Certificate
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import load_keyring, open_value, rotate_key_file, seal_value
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.core.loops import Runtime
from pilothouse.rotation import reseal_all
from pilothouse.setup import ensure_master_key
from tests.alerts.test_channels import Receiver
from tests.certificates.support import TlsServer, ca_file, leaf
from tests.conftest import one_store


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "RETRY_DELAYS", (0.0, 0.0))


async def test_one_seven_day_alert_and_one_failure_alert(
    db: Database, admin: Principal, db_url: str, tmp_path: Path
) -> None:
    ca, stranger = trustme.CA(), trustme.CA()
    soon = TlsServer(leaf(ca, "soon.example.test", days=6.5))
    untrusted = TlsServer(leaf(stranger, "odd.example.test", days=60))
    receiver = Receiver(204)
    settings = Settings(
        data_dir=tmp_path / "data", database_url=db_url, certs_ca_file=ca_file(ca, tmp_path)
    )
    ensure_master_key(settings.master_key_path)
    keyring = load_keyring(None, settings.master_key_path)
    try:
        async with db.session() as session:
            await alerts.add_channel(
                session, admin, keyring, name="oncall", kind="webhook", config={"url": receiver.url}
            )
            await service.track(
                session, admin, host="127.0.0.1", port=soon.port, server_name="soon.example.test"
            )
            await service.track(
                session,
                admin,
                host="127.0.0.1",
                port=untrusted.port,
                server_name="odd.example.test",
                alert_days=[10],
            )
        first = CertLoops(Runtime(db, settings, Leases(db, owner="w1")))
        other = CertLoops(Runtime(db, settings, Leases(db, owner="w2")))
        assert await first.check() == 2
        assert await other.check() == 0  # the same levels, claimed already
        assert await first.check(utcnow()) == 0
        await alerts.settle()
        by_event = {body["event"]: body for body in receiver.bodies}
        assert len(receiver.bodies) == 2, receiver.bodies
        expiring = by_event["certificate_expiring"]
        assert expiring["level"] == 7 and expiring["days_left"] == 6
        assert expiring["severity"] == "warning" and "expires in 6 days" in expiring["text"]
        failed = by_event["certificate_failed"]
        assert failed["domain"] == "odd.example.test" and failed["error"]
        async with db.session(write=False) as session:
            rows = {c.domain: c for c in await service.list_certificates(session, admin)}
        assert rows["soon.example.test"].status == "active"
        assert rows["odd.example.test"].status == "failed"
        assert rows["odd.example.test"].chain_valid is False
        assert isinstance(rows["soon.example.test"], Certificate)
    finally:
        soon.close()
        untrusted.close()
        receiver.close()


@one_store
async def test_renewal_failure_alerts_once_and_keys_reseal(
    db: Database, admin: Principal, tmp_path: Path
) -> None:
    key_file = tmp_path / "master.key"
    ensure_master_key(key_file)
    old = load_keyring(None, key_file)
    now = utcnow()
    async with db.session() as session:
        cert = Certificate(
            owner_id=admin.id,
            domain="api.example.test",
            host="api.example.test",
            server_name="api.example.test",
            source="acme",
            platform="router",
            status="active",
            expires_at=now + timedelta(days=20),
            auto_renewal=True,
            renewal_failures=1,
            last_error="validation failed: api.example.test: connection refused",
            key_sealed=seal_value("-----BEGIN PRIVATE KEY-----", old),
            key_id=old.current.hex(),
        )
        session.add(cert)
        session.add(
            AcmeAccount(
                directory_url="https://ca.test/dir",
                key_sealed=seal_value("account key", old),
                key_id=old.current.hex(),
            )
        )
    leases = Leases(db, owner="w1")
    [notice] = [n for n in await service.alerts_due(db, leases, now) if "level" not in n.message]
    assert notice.message["event"] == "certificate_renewal_failed"
    assert "connection refused" in notice.message["text"]
    again = await service.alerts_due(db, leases, now + timedelta(minutes=5))
    assert [n for n in again if "level" not in n.message] == []

    rotate_key_file(key_file)
    new = load_keyring(None, key_file)
    assert await reseal_all(db, new) == 2
    async with db.session(write=False) as session:
        stored = await session.get(Certificate, cert.id)
        assert stored is not None and stored.key_id == new.current.hex()
        assert open_value(stored.key_sealed or "", new) == "-----BEGIN PRIVATE KEY-----"
