"""The CLI found as a new user: prefixes of shown ids, `service update`, `audit`, readable
usage errors, no GetPassWarning, shell completion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveServer, one_store
from tests.test_cli import Cli


@pytest.fixture
def cli(live_server: LiveServer, admin_token: str, tmp_path: Path) -> Cli:
    return Cli(live_server.url, admin_token, tmp_path)


@one_store
def test_prefixes_update_and_audit(cli: Cli, tmp_path: Path) -> None:
    cli.run("env", "create", "prod")
    cli.run("service", "create", "web", "--env", "prod")
    cli.run(
        "service", "update", "web", "--env", "prod", "--command", "python -m http.server {port}"
    )
    assert cli.json("service", "show", "web", "--env", "prod")["command"] == (
        "python -m http.server {port}"
    )
    cli.run("artifact", "register", "web", "--version", "v1", "--commit", "a" * 40)
    dep = cli.json("deploy", "web", "--version", "v1", "--no-wait")
    shown = cli.run("deployments", "show", dep["id"][:8]).stdout
    assert dep["id"] in shown

    token = cli.json("token", "create", "--name", "ci")
    revoked = cli.run("token", "revoke", token["id"][:6]).stdout
    assert token["id"] in revoked

    trail = cli.json("audit", "--type", "service")
    assert trail and {row["entity_type"] for row in trail} == {"service"}
    assert "update" in {row["action"] for row in trail}
    assert "revoke" in cli.run("audit", "--type", "api_token").stdout

    # the command runs on the host: admin only, through the same API rules
    out = cli.run("user", "create", "ops", "--role", "operator").stdout
    operator = Cli(cli.env["PILOTHOUSE_URL"], out.split("shown once): ")[1].strip(), tmp_path)
    cli.run("env", "grant", "prod", "ops")
    refused = operator.run("service", "update", "web", "--env", "prod", "--command", "x", ok=False)
    assert "403" in refused.stderr or "admin" in refused.stderr
    operator.run("service", "update", "web", "--env", "prod", "--memory", "1024")
    assert "403" in operator.run("audit", ok=False).stderr


@one_store
def test_usage_errors_read_as_one_line(cli: Cli) -> None:
    for args in (("--bogus",), ("env", "create"), ("service", "list", "--nope")):
        proc = cli.run(*args, ok=False)
        assert "UsageError" not in proc.stderr and "NoSuchOption" not in proc.stderr, proc.stderr
        assert "MissingParameter" not in proc.stderr
    assert "--bogus" in cli.run("--bogus", ok=False).stderr


@one_store
def test_piped_secret_prints_no_getpass_warning(cli: Cli) -> None:
    cli.run("env", "create", "prod")
    proc = subprocess.run(
        [sys.executable, "-m", "pilothouse", "vars", "set", "API_KEY", "--env", "prod", "--secret"],
        input="s3cr3t-value\n",
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "GetPassWarning" not in proc.stderr and "s3cr3t-value" not in proc.stdout + proc.stderr
    assert "API_KEY" in cli.run("vars", "list", "--env", "prod").stdout


def test_shell_completion_is_offered() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pilothouse", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--install-completion" in proc.stdout
