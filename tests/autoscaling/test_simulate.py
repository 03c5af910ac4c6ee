"""What-if replays: the pure replay over a trace (decisions, cooldowns, replica-hours), and the
CLI over the API (`scaling set`, `simulate --trace`, `events`, a bad trace in one line)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from pilothouse.autoscaling.rules import Datapoint, Policy
from pilothouse.autoscaling.simulate import replay, trace_points
from pilothouse.cli import app
from pilothouse.client import CliError
from tests.conftest import LiveServer, one_store

T0 = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = Policy(
    min_instances=1,
    max_instances=4,
    evaluation_period_seconds=300,
    datapoints_to_trigger=2,
    scale_up_cooldown_seconds=300,
    scale_down_cooldown_seconds=600,
)


def _trace(cpu: list[float]) -> list[Datapoint]:
    return [
        Datapoint(T0 + timedelta(seconds=300 * (i + 1)), cpu=c, memory=30.0)
        for i, c in enumerate(cpu)
    ]


def test_replay_decisions_and_replica_hours() -> None:
    # An hour at 90% CPU, then an hour at 10%.
    points = _trace([90.0] * 12 + [10.0] * 12)
    done = replay(POLICY, points, T0, T0 + timedelta(hours=2), initial=1)
    ups = [s for s in done.steps if s.action == "scale_up"]
    downs = [s for s in done.steps if s.action == "scale_down"]
    # Two datapoints needed, one scale-up per 5-minute cooldown, up to max 4.
    assert [s.after for s in ups] == [2, 3, 4]
    assert ups[0].at == T0 + timedelta(minutes=10)
    assert ups[0].reason == "CPU 90% average for 10 minutes (threshold 80%)"
    # Down one at a time, 10 minutes apart, once two low datapoints are in.
    assert [s.after for s in downs] == [3, 2, 1]
    gaps = [(s.at - downs[0].at).total_seconds() / 60 for s in downs]
    assert gaps == [0, 10, 20]
    assert done.evaluations == 24 and done.peak == 4 and done.final == 1
    assert round(done.baseline_replica_hours, 6) == 2.0
    assert 2.0 < done.replica_hours < 8.0
    # Target mode on the same trace reaches 2 replicas at once (ceil(1 * 90 / 50)).
    target = replace(POLICY, mode="target", metric="cpu", target_cpu_percent=50.0)
    assert replay(target, points, T0, T0 + timedelta(hours=1), 1).steps[0].after == 2


@one_store
def test_scaling_cli(
    live_server: LiveServer, admin_token: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In process (the one-line error rendering is cli.main's, tested for every command in
    tests/test_cli.py): set, simulate over a trace, a bad trace's message."""
    monkeypatch.setenv("PILOTHOUSE_URL", live_server.url)
    monkeypatch.setenv("PILOTHOUSE_TOKEN", admin_token)
    monkeypatch.setenv("PILOTHOUSE_CLI_CONFIG", str(tmp_path / "cli.json"))
    http = httpx.Client(
        base_url=f"{live_server.url}/api/v1", headers={"Authorization": f"Bearer {admin_token}"}
    )
    http.post("/environments", json={"name": "prod"}).raise_for_status()
    http.post("/services", json={"environment": "prod", "name": "web"}).raise_for_status()
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), catch_exceptions=True, terminal_width=200)

    shown = run("scaling", "set", "web", "--min", "1", "--max", "3", "--period", "60")
    assert shown.exit_code == 0, shown.output
    assert "web (prod): enabled, step mode on cpu_memory, 1-3 replicas, now 1" in shown.output
    rows = ["timestamp,cpu,memory"] + [
        f"{(T0 + timedelta(minutes=i + 1)).isoformat()},{95 if i < 10 else 5},20" for i in range(20)
    ]
    trace = tmp_path / "trace.csv"
    trace.write_text("\n".join(rows) + "\n")
    out = run(
        "scaling", "simulate", "web", "--from", "2026-11-01", "--to",
        "2026-11-01T00:20:00+00:00", "--trace", str(trace),
    ).output  # fmt: skip
    assert "scale_up   1 -> 2  CPU 95% average for 2 minutes (threshold 80%)" in out
    assert "replicas 1 -> " in out and "replica-hours vs 0.33 at a fixed 1" in out
    trace.write_text("timestamp,cpu\nyesterday,5\n")
    bad = run(
        "scaling", "simulate", "web", "--from", "2026-11-01", "--to", "2026-11-02",
        "--trace", str(trace),
    )  # fmt: skip
    assert isinstance(bad.exception, CliError)
    assert "trace line 2: timestamp must be ISO 8601" in bad.exception.message
    http.post("/services/web/scale", json={"target_replicas": 2}).raise_for_status()
    listed = run("scaling", "events", "web", "--json")
    [event] = json.loads(listed.output)
    assert event["action"] == "manual_scale" and event["instances_after"] == 2
    http.close()


def test_trace_points_parse() -> None:
    points = trace_points("timestamp,value\n2026-11-01T00:05:00Z,3.5\n2026-11-01T00:10:00Z,\n")
    assert [p.value for p in points] == [3.5, None]
