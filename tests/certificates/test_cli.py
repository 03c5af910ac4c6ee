"""`pilothouse cert` and `pilothouse domain` as a user runs them: real subprocesses against a
live server; tables, --json, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trustme

from tests.certificates.support import TlsServer, leaf
from tests.conftest import LiveServer, one_store
from tests.test_cli import Cli


@pytest.fixture
def cli(live_server: LiveServer, admin_token: str, tmp_path: Path) -> Cli:
    return Cli(live_server.url, admin_token, tmp_path)


@one_store
def test_cert_and_domain_commands(cli: Cli, live_server: LiveServer, admin_token: str) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=f"{live_server.url}/api/v1", headers=headers) as client:
        env = {"name": "prod", "type": "production", "domain": "edge.example.net"}
        assert client.post("/environments", json=env).status_code == 201
        svc = {"environment": "prod", "name": "web", "command": "run {port}"}
        assert client.post("/services", json=svc).status_code == 201
    server = TlsServer(leaf(trustme.CA(), "web.example.test"))
    try:
        cert = cli.json("cert", "track", f"127.0.0.1:{server.port}", "--sni", "web.example.test")
    finally:
        server.close()
    assert cert["status"] == "failed" and cert["chain_valid"] is False  # not a trusted CA

    added = cli.run("domain", "add", "api.example.com", "--service", "web").stdout
    assert "create these DNS records" in added
    assert "CNAME api.example.com  edge.example.net" in added
    assert "TXT   _pilothouse.api.example.com  pilothouse-verification=" in added

    refused = cli.run("cert", "issue", "api.example.com", ok=False)
    assert "not verified" in refused.stderr
