"""The `pilothouse` command as a user runs it: a real subprocess against a live server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse import migrations
from tests.conftest import SHA, LiveServer, free_port, one_store


class Cli:
    def __init__(self, url: str, token: str | None, home: Path) -> None:
        self.env = {
            **os.environ,
            "PILOTHOUSE_URL": url,
            "PILOTHOUSE_CLI_CONFIG": str(home / "cli.json"),
            "COLUMNS": "200",
        }
        if token:
            self.env["PILOTHOUSE_TOKEN"] = token
        else:
            self.env.pop("PILOTHOUSE_TOKEN", None)

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "pilothouse", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        if ok:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        else:
            assert proc.returncode != 0, (args, proc.stdout)
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture
def cli(live_server: LiveServer, admin_token: str, tmp_path: Path) -> Cli:
    return Cli(live_server.url, admin_token, tmp_path)


@one_store
def test_cli_walkthrough(cli: Cli) -> None:
    cli.run(
        "env",
        "create",
        "prod",
        "--type",
        "production",
        "--limits",
        '{"max_deployment_frequency": 5}',
    )
    assert [e["name"] for e in cli.json("env", "list")] == ["prod"]
    assert cli.json("env", "show", "prod")["limits"] == {"max_deployment_frequency": 5}
    assert "prod" in cli.run("env", "list").stdout

    out = cli.run(
        "service",
        "create",
        "web",
        "--env",
        "prod",
        "--command",
        "app --port {port}",
        "--replicas",
        "2",
        "--cpu",
        "1.5",
    ).stdout
    assert "created service web" in out
    svc = cli.json("service", "show", "web")
    assert svc["target_replicas"] == 2 and svc["cpu_cores"] == 1.5
    cli.run("service", "scale", "web", "4")
    assert cli.json("service", "show", "web", "--env", "prod")["target_replicas"] == 4
    assert "web" in cli.run("service", "list").stdout

    cli.run(
        "artifact", "register", "web", "--version", "v1.0.0", "--commit", SHA, "--tag", "v1.0.0"
    )
    assert [a["version"] for a in cli.json("artifact", "list", "web")] == ["v1.0.0"]

    dep = cli.json("deploy", "web", "--version", "v1.0.0", "-m", "first release", "--no-wait")
    assert dep["status"] == "pending" and dep["commit_message"] == "first release"
    listed = cli.json("deployments", "list", "--service", "web")
    assert [d["id"] for d in listed["items"]] == [dep["id"]]
    assert cli.json("deployments", "list", "--status", "failed")["items"] == []
    assert cli.json("deployments", "show", dep["id"])["version"] == "v1.0.0"
    assert "no log lines" in cli.run("deployments", "logs", dep["id"]).stdout

    history = cli.json("history", "deployment", dep["id"])
    assert [h["to_status"] for h in history] == ["pending"]
    assert "created" in cli.run("history", "service", "web").stdout

    created = cli.run("user", "create", "olga", "--role", "operator").stdout
    token = created.split("token (shown once): ")[1].strip()
    assert token.startswith("ph_")
    assert {u["name"] for u in cli.json("user", "list")} == {"admin", "olga"}
    tokens = cli.json("token", "list", "--user", "olga")
    assert len(tokens) == 1 and token not in json.dumps(tokens)
    cli.run("token", "revoke", tokens[0]["id"])
    issued = cli.json("token", "create", "--user", "olga", "--name", "ci")
    assert issued["token"].startswith("ph_")

    refused = cli.run("service", "delete", "web", ok=False)
    assert "active deployment" in refused.stderr  # its deployment is still pending
    finished = httpx.post(
        f"{cli.env['PILOTHOUSE_URL']}/api/v1/deployments/{dep['id']}/transition",
        json={"to": "failed", "reason": "never carried out"},
        headers={"Authorization": f"Bearer {cli.env['PILOTHOUSE_TOKEN']}"},
    )
    assert finished.status_code == 200, finished.text
    cli.run("service", "delete", "web")
    cli.run("service", "show", "web", ok=False)
    cli.run("env", "delete", "prod")
    assert cli.json("env", "list") == []


@one_store
def test_cli_errors_are_one_line(cli: Cli, tmp_path: Path, live_server: LiveServer) -> None:
    cli.run("env", "create", "prod")
    bad = cli.run("service", "create", "web", "--env", "prod", "--replicas", "101", ok=False)
    assert "target_replicas: must be between 1 and 100 (HTTP 422)" in bad.stderr
    cli.run("service", "create", "web", "--env", "prod")
    dup = cli.run("service", "create", "web", "--env", "prod", ok=False)
    assert "already exists" in dup.stderr and "409" in dup.stderr
    missing = cli.run("service", "show", "nope", ok=False)
    assert "not found" in missing.stderr and "404" in missing.stderr
    sha = cli.run("artifact", "register", "web", "--version", "v1", "--commit", "xyz", ok=False)
    assert "commit_sha" in sha.stderr
    nover = cli.run("deploy", "web", "--version", "v9.9.9", "--no-wait", ok=False)
    assert "not registered" in nover.stderr
    badjson = cli.run("env", "create", "x", "--limits", "{nope", ok=False)
    assert "JSON object" in badjson.stderr

    anonymous = Cli(live_server.url, None, tmp_path / "anon")
    assert "no API token" in anonymous.run("env", "list", ok=False).stderr
    wrong = Cli(live_server.url, "ph_wrong", tmp_path / "wrong")
    assert "401" in wrong.run("env", "list", ok=False).stderr
    down = Cli(f"http://127.0.0.1:{free_port()}", "ph_x", tmp_path / "down")
    assert "cannot reach pilothouse" in down.run("env", "list", ok=False).stderr

    viewer_token = (
        cli.run("user", "create", "vic", "--role", "viewer")
        .stdout.split("shown once): ")[1]
        .strip()
    )
    viewer = Cli(live_server.url, viewer_token, tmp_path / "vic")
    refused = viewer.run("env", "create", "mine", ok=False)
    assert "403" in refused.stderr and "viewer" in refused.stderr
    assert viewer_token not in refused.stderr


def test_init_then_serve_then_cli(db_url: str, tmp_path: Path) -> None:
    """The quickstart path: init prints a token once and saves it; serve upgrades and answers."""
    data = tmp_path / "data"
    port = free_port()
    env = {
        **os.environ,
        "PILOTHOUSE_DATA_DIR": str(data),
        "PILOTHOUSE_CLI_CONFIG": str(tmp_path / "cli.json"),
        "PILOTHOUSE_PORT": str(port),
    }
    env.pop("PILOTHOUSE_TOKEN", None)
    env.pop("PILOTHOUSE_URL", None)
    if db_url.startswith("postgresql"):
        from pilothouse import migrations

        migrations.downgrade(db_url, "base")  # serve/init must build the schema themselves
        env["PILOTHOUSE_DATABASE_URL"] = db_url
    run = [sys.executable, "-m", "pilothouse"]
    first = subprocess.run([*run, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    token = first.stdout.split("admin token")[1].split()[0]
    assert token.startswith("ph_")
    assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700 and data.stat().st_uid == os.geteuid()
    if os.geteuid() == 0:  # replicas and commands will run as the unprivileged user
        assert "replicas run as pilothouse-run" in first.stdout, first.stdout
    assert stat.S_IMODE((tmp_path / "cli.json").stat().st_mode) == 0o600
    if not db_url.startswith("postgresql"):
        assert (data / "pilothouse.db").exists()

    second = subprocess.run([*run, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "already exists" in second.stdout
    assert "ph_" not in second.stdout

    server = subprocess.Popen(
        [*run, "serve", "--no-access-log"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "serve did not come up"
            time.sleep(0.2)
        proc = subprocess.run(
            [*run, "env", "create", "dev"], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        listed = subprocess.run(
            [*run, "env", "list", "--json"], env=env, capture_output=True, text=True, timeout=60
        )
        assert [e["name"] for e in json.loads(listed.stdout)] == ["dev"]
    finally:
        server.terminate()
        output = server.communicate(timeout=15)[0]
    assert token not in output


def test_db_upgrade_command(tmp_path: Path) -> None:
    env = {**os.environ, "PILOTHOUSE_DATA_DIR": str(tmp_path / "d")}
    run = [sys.executable, "-m", "pilothouse", "db"]
    up = subprocess.run([*run, "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    head = migrations.head_revision()
    assert up.returncode == 0 and f"revision {head}" in up.stdout, up.stderr
    cur = subprocess.run([*run, "current"], env=env, capture_output=True, text=True, timeout=120)
    assert f"current {head}, head {head}" in cur.stdout
    down = subprocess.run(
        [*run, "downgrade", "base"], env=env, capture_output=True, text=True, timeout=120
    )
    assert down.returncode == 0 and "base" in down.stdout


# (typer itself loads pydantic to render a sub-command's help, so pydantic is not listed.)
HEAVY_MODULES = ("sqlalchemy", "fastapi", "psycopg", "boto3", "uvicorn", "alembic")


@pytest.mark.parametrize("args", [["--help"], ["replicas", "--help"], ["service", "--help"]])
def test_help_loads_no_database_or_web_stack(args: list[str]) -> None:
    """`pilothouse --help` and the HTTP commands stay fast: none of them imports the store,
    the web framework or the cloud SDK (those load inside the commands that need them)."""
    probe = (
        "import sys\n"
        f"sys.argv = ['pilothouse', *{args!r}]\n"
        "from pilothouse.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


FORGED = (
    "ok\x1b[2K\r2026-01-01 00:00:00 info  [deploy] forged line\n"
    "2026-01-01 00:00:01 info  [deploy] another\x1b]0;title\x07\x1b[8mhidden\x1b[0m\x08\x9b1m"
)


@one_store
def test_logs_never_print_terminal_control_sequences(cli: Cli, live_server: LiveServer) -> None:
    """An operator posts a line that would erase, overwrite or forge lines on a terminal: the
    CLI prints it on one line with the sequences removed and other controls made visible."""
    cli.run("env", "create", "prod")
    cli.run("service", "create", "web", "--env", "prod")
    cli.run("artifact", "register", "web", "--version", "v1.0.0", "--commit", "a" * 40)
    dep = cli.json(
        "deploy", "web", "--version", "v1.0.0", "--no-wait", "-m", "[red]styled[/red] \x1b[2Jx"
    )
    shown = cli.run("deployments", "show", dep["id"]).stdout
    assert "[red]styled[/red]" in shown and "\x1b" not in shown, repr(shown)
    posted = httpx.post(
        f"{cli.env['PILOTHOUSE_URL']}/api/v1/deployments/{dep['id']}/logs",
        json={"message": FORGED},
        headers={"Authorization": f"Bearer {cli.env['PILOTHOUSE_TOKEN']}"},
    )
    assert posted.status_code == 201, posted.text
    for args in (("logs", dep["id"]), ("deployments", "logs", dep["id"])):
        printed = cli.run(*args).stdout
        assert not any(ch in printed for ch in "\x1b\r\x07\x08\x9b"), repr(printed)
        lines = printed.splitlines()
        assert len(lines) == 1, lines
        assert "forged line" in lines[0] and "hidden" in lines[0]


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_printable_leaves_no_control_character(text: str) -> None:
    from pilothouse.console import printable

    shown = printable(text)
    assert not any((ord(ch) < 0x20 and ch != "\t") or 0x7F <= ord(ch) <= 0x9F for ch in shown)
