"""Issue 13.11 through a real failed deployment: `pilothouse deploy` (`pilothouse serve` with its
worker, the CLI as a subprocess) collapses a build that printed the same line 40 times, and
states the outcome with its reason; `deployments logs` puts it first and last."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import SHA, one_store
from tests.test_cli import Cli

NOISY_BUILD = (
    "echo building; i=0; while [ $i -lt 40 ]; do echo 'GET /health 503'; i=$((i+1)); done; exit 3"
)


@one_store
def test_a_failed_deploy_reads_well(stack: dict[str, Any], tmp_path: Path) -> None:
    cli = Cli(stack["server"].url, stack["token"], tmp_path)
    cli.run("env", "create", "prod")
    cli.run(
        "service",
        "create",
        "web",
        "--env",
        "prod",
        "--command",
        "sleep 60",
        "--config",
        json.dumps({"build_command": NOISY_BUILD}),
    )
    cli.run("artifact", "register", "web", "--version", "v1.0.0", "--commit", SHA)
    proc = cli.run("deploy", "web", "--version", "v1.0.0", ok=False)
    out = proc.stdout.splitlines()
    dep_id = out[0].split()[1]
    assert sum("GET /health 503" in line for line in out) == 1, proc.stdout
    assert any(line.startswith("... x 40 (") for line in out), proc.stdout
    outcome = f"deployment {dep_id} failed: build command exited with status 3"
    assert proc.stderr.strip() == f"error: {outcome}", proc.stderr
    assert len(out) < 15, proc.stdout

    logs = cli.run("deployments", "logs", dep_id).stdout.splitlines()
    assert logs[0] == outcome and logs[-1] == outcome, logs
    assert sum("GET /health 503" in line for line in logs) == 1, logs
    assert len(logs) < 15, logs
