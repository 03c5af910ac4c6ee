"""/api/v1/certificates: track an endpoint (checked at once), list, show by domain or id
prefix, change alert levels (422 naming the field), check again, untrack; another user's
certificate is 404; every change is audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from pilothouse.config import Settings
from tests.certificates.support import TlsServer, ca_file, leaf
from tests.conftest import Api, one_store


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="Pilothouse Test CA")


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[TlsServer]:
    server = TlsServer(leaf(ca, "web.example.test", days=45))
    yield server
    server.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path, ca: trustme.CA) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        role="api",
        certs_ca_file=ca_file(ca, tmp_path),
    )


@one_store
def test_track_show_update_renew_untrack(api: Api, server: TlsServer) -> None:
    body = {"host": "127.0.0.1", "port": server.port, "server_name": "web.example.test"}
    cert = api.ok(api.post("/certificates", body), 201)
    assert cert["status"] == "active" and cert["chain_valid"] is True
    assert cert["domain"] == "web.example.test" and cert["days_left"] == 44
    assert cert["certificate_authority"] == "Pilothouse Test CA"
    assert cert["sans"] == ["web.example.test"] and len(cert["certificate_hash"]) == 64
    assert cert["alert_days"] == [30, 14, 7, 3, 1] and cert["source"] == "observed"
    assert api.post("/certificates", body).status_code == 409

    [listed] = api.ok(api.get("/certificates"))
    assert listed["id"] == cert["id"]
    assert api.ok(api.get("/certificates/web.example.test"))["id"] == cert["id"]
    assert api.ok(api.get(f"/certificates/{cert['id'][:6]}"))["id"] == cert["id"]

    bad = api.patch("/certificates/web.example.test", {"alert_days": [0]})
    assert bad.status_code == 422 and "alert_days" in bad.text
    changed = api.ok(api.patch("/certificates/web.example.test", {"alert_days": [5, 21]}))
    assert changed["alert_days"] == [21, 5]

    renewed = api.ok(api.post("/certificates/web.example.test/renew"))
    assert renewed["last_checked_at"] >= cert["last_checked_at"]

    viewer = api.as_(api.user("val", "viewer"))
    assert viewer.get("/certificates/web.example.test").status_code == 404
    assert viewer.ok(viewer.get("/certificates")) == []

    api.ok(api.delete("/certificates/web.example.test"), 204)
    assert api.get("/certificates/web.example.test").status_code == 404
    actions = [
        (e["action"], e["entity_type"])
        for e in api.ok(api.get("/audit", params={"entity_type": "certificate"}))
    ]
    assert ("create", "certificate") in actions and ("delete", "certificate") in actions


@one_store
def test_unreachable_endpoint_is_failed(api: Api) -> None:
    from tests.conftest import free_port

    cert = api.ok(api.post("/certificates", {"host": "127.0.0.1", "port": free_port()}), 201)
    assert cert["status"] == "failed" and "handshake failed" in cert["last_error"]


@one_store
def test_an_unknown_challenge_is_a_json_404_not_a_dashboard_page(api: Api) -> None:
    # The CA fetches this path, not a person: the dashboard's HTML error pages stay off it
    # (the schema fuzzer found the HTML 404 its schema does not document).
    got = api.client.get("/.well-known/acme-challenge/0")
    assert got.status_code == 404
    assert got.headers["content-type"].startswith("application/json")
    assert got.json()["error"] == "not_found"
