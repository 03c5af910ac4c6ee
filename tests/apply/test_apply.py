"""pilothouse apply end to end: through the API on both stores (an unchanged file writes
nothing), and the CLI's round trip of examples/pilothouse.yaml on one store."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from pilothouse.cli import main
from tests.conftest import Api, LiveServer, free_port, one_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "pilothouse.yaml").read_text()


def example(port: int) -> str:
    """The example with a router port nothing else on this host uses."""
    return EXAMPLE.replace("router_port: 8700", f"router_port: {port}")


def count_writes(api: Api) -> list[str]:
    """The INSERT/UPDATE/DELETE statements the app runs from now on."""
    writes: list[str] = []
    engine = api.client.app.state.db.write_engine.sync_engine  # type: ignore[attr-defined]

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    return writes


def test_apply_then_reapply_writes_nothing(api: Api) -> None:
    text = example(free_port())
    first = api.ok(api.post("/apply", {"document": text}))
    assert first["applied"] and first["counts"] == {"create": 5, "update": 0, "delete": 0}
    svc = api.ok(api.get("/services/sample", params={"environment": "demo"}))
    assert svc["target_replicas"] == 3 and svc["health_check"] == {"path": "/health", "timeout": 10}
    audited = {(e["action"], e["entity_type"]) for e in api.ok(api.get("/audit"))}
    assert {("create", "environment"), ("create", "service"), ("apply", "configuration")} <= audited
    assert ("requirement_set", "environment") in audited
    assert ("create", "metric_alert_rule") in audited

    writes = count_writes(api)
    again = api.ok(api.post("/apply", {"document": text}))
    assert again["changes"] == [] and not again["applied"]
    assert writes == []


@one_store
def test_a_failing_change_applies_nothing(api: Api) -> None:
    """The router port is held by another process on this host: creating the service is refused
    (409) after the environment and requirements were made, and the transaction takes them back."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        refused = api.post("/apply", {"document": example(holder.getsockname()[1])})
    assert refused.status_code == 409, refused.text
    assert "in use on this host" in refused.json()["message"]
    assert api.ok(api.get("/environments")) == []


@one_store
def test_driver_settings_are_checked_with_positions(api: Api) -> None:
    text = example(70000).replace("router: nginx", "router: nginx\n          max_surge: -1")
    refused = api.post("/apply/plan", {"document": text})
    assert refused.status_code == 422, refused.text
    fields = {(d["field"], d["line"]) for d in refused.json()["detail"]}
    assert ("environments.demo.services.sample.driver_config.router_port", 29) in fields
    assert ("environments.demo.services.sample.driver_config.max_surge", 28) in fields


@one_store
def test_stale_plan_is_refused(api: Api) -> None:
    text = example(free_port())
    plan = api.ok(api.post("/apply/plan", {"document": text}))
    api.ok(api.post("/environments", {"name": "demo", "type": "staging"}), 201)
    stale = api.post("/apply", {"document": text, "expect": plan["fingerprint"]})
    assert stale.status_code == 409 and plan["fingerprint"] in stale.json()["message"]


class Cli:
    """Runs `pilothouse ...` in this process (main(): exit codes and output as a user gets
    them, without a new interpreter per call); `subprocess=True` runs the real command."""

    def __init__(
        self, server: LiveServer, token: str, home: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.capsys = capsys
        self.env = {
            "PILOTHOUSE_URL": server.url,
            "PILOTHOUSE_TOKEN": token,
            "PILOTHOUSE_CLI_CONFIG": str(home / "cli.json"),
            "COLUMNS": "200",
        }

    def __call__(self, *args: str, code: int = 0, subprocess_: bool = False) -> Run:
        if subprocess_:
            proc = subprocess.run(
                [sys.executable, "-m", "pilothouse", *args],
                env={**os.environ, **self.env},
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
            run = Run(proc.returncode, proc.stdout, proc.stderr)
        else:
            run = self._in_process(args)
        assert "Traceback" not in run.stderr + run.stdout, run.stderr
        assert run.returncode == code, (args, run.stdout, run.stderr)
        return run

    def _in_process(self, args: tuple[str, ...]) -> Run:
        self.capsys.readouterr()
        saved = dict(os.environ), list(sys.argv)
        os.environ.update(self.env)
        sys.argv = ["pilothouse", *args]
        returncode = 0
        try:
            main()
        except SystemExit as exc:
            returncode = int(exc.code or 0)
        finally:
            os.environ.clear()
            os.environ.update(saved[0])
            sys.argv = saved[1]
        captured = self.capsys.readouterr()
        return Run(returncode, captured.out, captured.err)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@one_store
def test_example_round_trip(
    live_server: LiveServer,
    admin_token: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cli = Cli(live_server, admin_token, tmp_path, capsys)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no terminal: --yes is needed
    port = free_port()
    config = tmp_path / "pilothouse.yaml"
    config.write_text(example(port))

    applied = cli("apply", "-f", str(config), "--yes", subprocess_=True)
    assert "+ service demo/sample" in applied.stdout
    assert "applied: 5 created" in applied.stdout
    assert "no changes" in cli("apply", "-f", str(config), "--check").stdout
    # without a terminal and without --yes nothing is applied
    config.write_text(example(port).replace("target_replicas: 3", "target_replicas: 2"))
    assert "--yes" in cli("apply", "-f", str(config), code=1).stderr

    # secrets live in variables; the file names them
    headers = {"Authorization": f"Bearer {admin_token}"}
    for key, value in (
        ("APP_DB", f"sqlite:///{tmp_path}/app.db"),
        ("OPS_HOOK", "https://hooks.example/T000/secret-path"),
    ):
        put = httpx.put(
            f"{live_server.url}/api/v1/environments/demo/vars/{key}",
            json={"value": value, "is_secret": True},
            headers=headers,
        )
        assert put.status_code == 200, put.text
    edited = example(port).replace("target_replicas: 3", "target_replicas: 2") + (
        "    backups:\n"
        "      app-db:\n"
        "        dsn: {variable: APP_DB}\n"
        "        schedule: '30 3 * * *'\n"
        "channels:\n"
        "  ops:\n"
        "    kind: slack\n"
        "    secrets:\n"
        "      url: {variable: OPS_HOOK, environment: demo}\n"
        "    deploy_events: [failed]\n"
    )
    config.write_text(edited)
    drift = cli("apply", "-f", str(config), "--check", code=2)
    assert "~ service demo/sample" in drift.stdout
    assert "target_replicas: 3 -> 2" in drift.stdout
    assert "+ backup_target app-db" in drift.stdout and "+ channel ops" in drift.stdout
    assert "secret-path" not in drift.stdout and "app.db" not in drift.stdout
    assert "<secret from variable APP_DB of demo>" in drift.stdout
    assert "applied: 2 created, 1 updated" in cli("apply", "-f", str(config), "--yes").stdout

    exported = tmp_path / "exported.yaml"
    cli("export", "-o", str(exported))
    text = exported.read_text()
    assert "variable: APP_DB" in text and "secret-path" not in text
    assert "no changes" in cli("apply", "-f", str(exported), "--check").stdout

    # --prune deletes what the file no longer mentions
    config.write_text(edited[: edited.index("channels:")])
    assert "- channel ops" in cli("apply", "-f", str(config), "--check", "--prune", code=2).stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("environments:\n  demo:\n    type: prod\n    colour: blue\n")
    refused = cli("apply", "-f", str(bad), code=1)
    lines = refused.stderr.splitlines()
    assert f"{bad}:3:11: environments.demo.type: Input should be" in lines[0]
    assert lines[1] == f"{bad}:4:5: environments.demo.colour: unknown key"
    assert lines[-1] == f"error: {bad}: 2 problem(s); nothing applied"


@one_store
def test_each_change_needs_the_role_it_needs_through_the_api(api: Api) -> None:
    """An operator may plan, but creating an environment is admin work: 403, nothing applied;
    with the environment made and granted, the operator applies the rest."""
    otto = api.as_(api.user("otto", "operator"))
    # a command defines what runs on the host (admin): the operator's file has none
    text = example(free_port()).replace("command: python3 examples/sampleapp.py --port {port}", "")
    assert otto.ok(otto.post("/apply/plan", {"document": text}))["counts"]["create"] == 5
    refused = otto.post("/apply", {"document": text})
    assert refused.status_code == 403 and "manage environments" in refused.json()["message"]
    assert api.ok(api.get("/services")) == []
    env_only = text.split("    requirements:")[0]
    api.ok(api.post("/apply", {"document": env_only}))
    api.ok(api.post("/environments/demo/grants", {"user": "otto"}), 204)
    # requirements are admin work too; without them the operator applies services and rules
    no_requirements = text.replace(
        text[text.index("    requirements:") : text.index("    services:")], ""
    )
    done = otto.ok(otto.post("/apply", {"document": no_requirements}))
    assert done["counts"] == {"create": 2, "update": 0, "delete": 0}
