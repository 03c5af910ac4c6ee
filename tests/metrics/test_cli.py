"""pilothouse metrics query|list|show, and `token create --ingest`, against a live server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from pilothouse.metrics.sparkline import BLOCKS, sparkline
from tests.conftest import LiveServer, one_store
from tests.test_cli import Cli


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([1.0, 1.0]) == BLOCKS[0] * 2
    assert sparkline([0.0, 7.0, 3.5]) == BLOCKS[0] + BLOCKS[7] + BLOCKS[4]
    assert len(sparkline([float(i) for i in range(500)], width=40)) == 40


@one_store
def test_metrics_cli(live_server: LiveServer, admin_token: str, tmp_path: Path) -> None:
    cli = Cli(live_server.url, admin_token, tmp_path)
    cli.run("env", "create", "prod")
    token = cli.json("token", "create", "--ingest", "prod")
    assert token["scope"] == "ingest"
    now = datetime.now(UTC)
    samples = [
        {
            "name": "http_request_duration_ms",
            "tags": {"service": "web", "replica": f"r{i % 2}"},
            "value": float(10 * (i % 10)),
            "timestamp": (now - timedelta(seconds=600 - i)).isoformat(),
        }
        for i in range(600)
    ]
    pushed = httpx.post(
        f"{live_server.url}/api/v1/metrics/ingest",
        json={"samples": samples},
        headers={"Authorization": f"Bearer {token['token']}"},
        timeout=120,  # the machine is shared: a slow answer is not what this tests
    )
    assert pushed.status_code == 200, pushed.text
    # The ingest token itself cannot use the CLI for anything else.
    denied = Cli(live_server.url, token["token"], tmp_path).run("metrics", "list", ok=False)
    assert "ingest token may only push metrics" in denied.stderr

    listed = cli.json("metrics", "list")
    assert len(listed) == 2
    table = cli.run("metrics", "list").stdout
    assert "http_request_duration_ms" in table and "replica=r0" in table

    shown = cli.run("metrics", "query", "http_request_duration_ms", "--window", "15m").stdout
    assert "avg=45" in shown and "(2 series, 15m)" in shown
    assert any(ch in shown for ch in BLOCKS)
    grouped = cli.json(
        "metrics", "query", "http_request_duration_ms", "--group-by", "replica", "--stat", "max"
    )
    assert {g["group"]: g["value"] for g in grouped["groups"]} == {"r0": 80.0, "r1": 90.0}

    one = cli.run("metrics", "show", str(listed[0]["id"])).stdout
    assert "http_request_duration_ms{" in one and "p95=" in one
    bad = cli.run("metrics", "query", "x", "--window", "soon", ok=False)
    assert "window" in bad.stderr
    cli.run("metrics", "show", "424242", ok=False)

    # Alert rules: add, list, tune/pause, remove.
    cli.run(
        "metrics", "rules", "add", "slow", "--env", "prod", "--metric", "http_request_duration_ms",
        "--expression", "p95", "--warning", "50", "--for-m", "2", "--for-n", "3",
    )  # fmt: skip
    table = cli.run("metrics", "rules", "list").stdout
    assert "slow" in table and "p95(http_request_duration_ms) over 300s > 50/-" in table
    paused = cli.json("metrics", "rules", "update", "slow", "--critical", "90", "--paused")
    assert paused["critical"] == 90 and paused["is_active"] is False
    cli.run("metrics", "rules", "rm", "slow")
    assert "not found" in cli.run("metrics", "rules", "rm", "slow", ok=False).stderr
