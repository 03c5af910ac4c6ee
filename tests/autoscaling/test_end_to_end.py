"""Autoscaling end to end with real replicas behind the nginx router and short periods (2 s
period, 2 datapoints): sustained CPU load through the router's `/burn` -> a scale-up event that
names the metric and the duration, and the new replica serving through the router; a rollout
started under load neither shrinks the service nor goes past max_instances; idle -> scale-in
only after the cooldown. One store: the store guarantees are tested in test_evaluate.py."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, one_store
from tests.engine_support import Client

PERIOD = 2
COOLDOWN = 6


@pytest.fixture
def fast_stack(
    db_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """The stack with the evaluator and the built-in samples every second, and replica CPU
    sampled every half second."""
    monkeypatch.setenv(
        "PILOTHOUSE_LOOP_INTERVALS",
        '{"autoscaling.evaluate": 1, "metrics.builtin": 1, "deployments.sample": 0.5}',
    )
    stack: dict[str, Any] = request.getfixturevalue("stack")
    return stack


class Burn:
    """Two clients burning CPU through the router in 1 s requests until stopped."""

    def __init__(self, port: int) -> None:
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(port,), daemon=True) for _ in range(2)
        ]

    def _run(self, port: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while not self.stop_event.is_set():
                try:
                    http.get("/burn", params={"seconds": 1})
                except httpx.HTTPError:
                    time.sleep(0.1)

    def __enter__(self) -> Burn:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=15)


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _events(client: Client, action: str) -> list[dict[str, Any]]:
    rows = client.ok("GET", "/services/web/scaling/events")
    return [r for r in rows if r["action"] == action]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@one_store
def test_load_scales_up_rollout_holds_idle_scales_down(fast_stack: dict[str, Any]) -> None:
    client: Client = fast_stack["client"]
    port = free_port()
    client.setup_service(replicas=1, router_port=port)
    client.wait(client.deploy("web", "v1.0.0")["id"])
    client.ok(
        "PUT",
        "/services/web/scaling",
        json={
            "metric": "cpu",
            "min_instances": 1,
            "max_instances": 2,
            # Relative to the service's 0.5 cores: 40% is a fifth of a core, which a burning
            # replica reaches even on a busy machine; an idle one stays well below 10%.
            "scale_up_threshold": 0.4,
            "scale_down_threshold": 0.1,
            "evaluation_period_seconds": PERIOD,
            "datapoints_to_trigger": 2,
            "scale_up_cooldown_seconds": 0,
            "scale_down_cooldown_seconds": COOLDOWN,
        },
    )
    first_pid = httpx.get(f"http://127.0.0.1:{port}/").json()["pid"]
    timeline: dict[str, float] = {}
    started = time.monotonic()
    load_began = datetime.now(UTC)
    with Burn(port):
        try:
            [up] = _wait(lambda: _events(client, "scale_up"), 40, "a scale-up event")
        except AssertionError:
            policy = client.ok("GET", "/services/web/scaling")
            replicas = client.replicas("web", None)
            raise AssertionError(f"no scale-up: {policy}, {replicas}") from None
        timeline["scale-up event"] = time.monotonic() - started
        assert up["triggered_by"] == "autoscaler" and up["success"], up
        assert (up["instances_before"], up["instances_after"]) == (1, 2)
        reason = up["trigger_reason"]
        assert reason.startswith("CPU ") and f"average for {2 * PERIOD} seconds" in reason, reason
        assert "(threshold 40%)" in reason and up["cpu_percent_avg"] > 40

        def second_replica_serves() -> bool:
            pid = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).json()["pid"]
            return bool(pid != first_pid)

        _wait(second_replica_serves, 40, "the new replica serving through the router")
        timeline["new replica serving"] = time.monotonic() - started
        # The new replica can serve before its scale deployment is recorded as finished; a
        # deploy before that is refused (one active deployment per service).
        assert client.wait(up["deployment_id"])["status"] == "success"
        # A rollout under load: the count the autoscaler chose, never past max_instances.
        dep = client.deploy("web", "v2.0.0")
        done = client.wait(dep["id"], timeout=60)
        assert done["status"] == "success", done
        assert done["instances_deployed"] == 2, done
        assert client.ok("GET", "/services/web")["target_replicas"] == 2
        assert _events(client, "scale_down") == []
        timeline["rollout done"] = time.monotonic() - started
    idle = time.monotonic()
    [down] = _wait(lambda: _events(client, "scale_down"), 60, "a scale-down event")
    timeline["scale-down event after idle"] = time.monotonic() - idle
    assert (down["instances_before"], down["instances_after"]) == (2, 1)
    assert "below" not in down["trigger_reason"] and "(threshold 10%)" in down["trigger_reason"]
    assert (_at(down["timestamp"]) - _at(up["timestamp"])).total_seconds() >= COOLDOWN
    # What-if over the stored metrics of this very run: the same policy grows the service.
    replayed = client.ok(
        "POST",
        "/services/web/scaling/simulate",
        json={"start": load_began.isoformat(), "end": datetime.now(UTC).isoformat()},
    )
    assert replayed["source"] == "stored" and replayed["datapoints"] > 0
    assert any(s["action"] == "scale_up" for s in replayed["steps"]), replayed
    print("autoscaling timeline (s):", {k: round(v, 1) for k, v in timeline.items()})
