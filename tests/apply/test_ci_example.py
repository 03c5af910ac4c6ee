"""examples/github-actions.yml runs only commands and options the CLI has, and a deployer
token can do each step it runs (a deploy of what is already live exits 0, a refused one 1)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from pilothouse.cli import app
from tests.apply.test_apply import Cli
from tests.conftest import SHA, LiveServer, one_store

ROOT = Path(__file__).resolve().parents[2]


def _invocations() -> list[list[str]]:
    workflow = yaml.safe_load((ROOT / "examples" / "github-actions.yml").read_text())
    found: list[list[str]] = []
    for step in workflow["jobs"]["deploy"]["steps"]:
        for line in str(step.get("run", "")).replace("\\\n", " ").splitlines():
            words = shlex.split(line.replace("$(", "").replace(")", ""), comments=True)
            if words[:1] == ["pilothouse"]:
                found.append(words[1:])
    return found


def test_workflow_uses_real_commands_and_options() -> None:
    calls = _invocations()
    assert [c[:2] for c in calls] == [
        ["artifact", "register"],
        ["deploy", "$SERVICE"],
        ["deployments", "list"],
        ["service", "show"],
    ]
    root: Any = get_command(app)
    for call in calls:
        command = root
        rest = list(call)
        while hasattr(command, "commands") and rest and rest[0] in command.commands:
            command = command.commands[rest.pop(0)]
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for word in rest:
            if word.startswith("--"):
                assert word in options, (call, word)


@pytest.mark.parametrize("path", ["examples/github-actions.yml", "examples/pilothouse.yaml"])
def test_examples_are_yaml(path: str) -> None:
    assert yaml.safe_load((ROOT / path).read_text())


@one_store
def test_workflow_steps_with_a_deployer_token(
    live_server: LiveServer,
    admin_token: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The workflow's steps as a deployer: register, deploy (exit 0), what is already live
    (exit 0, nothing to do), an environment not granted (exit 1, one line)."""
    admin = Cli(live_server, admin_token, tmp_path, capsys)
    admin("env", "create", "prod", "--type", "production")
    admin("service", "create", "web", "--env", "prod", "--command", "run {port}")
    admin("env", "create", "other")
    admin("service", "create", "api", "--env", "other", "--command", "run {port}")
    created = admin("user", "create", "ci", "--role", "deployer", "--json")
    token = json.loads(created.stdout)["token"]["token"]
    admin("env", "grant", "prod", "ci")
    ci = Cli(live_server, token, tmp_path, capsys)
    ci(
        "artifact",
        "register",
        "web",
        "--env",
        "prod",
        "--version",
        "main-0123456789ab",
        "--commit",
        SHA,
    )
    recorded = ci(
        "deploy",
        "web",
        "--env",
        "prod",
        "--version",
        "main-0123456789ab",
        "--no-wait",
        "--trigger",
        "github_action",
        "--ci-run-id",
        "42",
    )
    assert "recorded: pending" in recorded.stdout
    refused = ci("deploy", "api", "--env", "other", "--version", "v1.0.0", "--wait", code=1)
    assert refused.stderr.strip().startswith("error: ") and len(refused.stderr.splitlines()) == 1
    scale = ci("service", "scale", "web", "2", "--env", "prod", code=1)
    assert "deployer" in scale.stderr
