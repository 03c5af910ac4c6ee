"""When a service may be stopped, started or deployed to (services/stopstart.py): table tests."""

from __future__ import annotations

import pytest

from pilothouse.services.stopstart import deploy_refusal, start_refusal, stop_refusal

STATUSES = ("pending", "scheduled", "running", "stopped", "failed")


@pytest.mark.parametrize(
    ("status", "live", "can_stop", "refused", "says"),
    [
        ("running", "v1", True, False, ""),
        ("failed", "v1", True, False, ""),  # a crash-looping service can be stopped
        ("scheduled", "v1", True, False, ""),
        ("stopped", "v1", True, True, "already stopped: cannot go from 'stopped' to 'stopped'"),
        ("pending", None, True, True, "no live release"),
        ("failed", None, True, True, "cannot go from 'failed' to 'stopped'"),
        ("running", "v1", False, True, "stop_command"),
    ],
)
def test_stop(status: str, live: str | None, can_stop: bool, refused: bool, says: str) -> None:
    refusal = stop_refusal("web", status, live, can_stop=can_stop)
    assert (refusal is not None) == refused
    if refusal is not None:
        assert says in refusal.message
        assert refusal.detail == {"entity": "service", "from": status, "to": "stopped"}


@pytest.mark.parametrize(
    ("status", "live", "says"),
    [
        ("stopped", "v1", None),
        ("running", "v1", "is running, not stopped"),
        ("scheduled", "v1", "already running"),
        ("failed", "v1", "not from 'failed'"),
        ("pending", None, "is pending, not stopped"),
        ("stopped", None, "no release to start"),
    ],
)
def test_start(status: str, live: str | None, says: str | None) -> None:
    refusal = start_refusal("web", status, live)
    if says is None:
        assert refusal is None
        return
    assert refusal is not None and says in refusal.message
    assert refusal.detail == {"entity": "service", "from": status, "to": "running"}


@pytest.mark.parametrize("event", ["deploy", "rollback", "restart", "config_update", "scale"])
@pytest.mark.parametrize("status", STATUSES)
def test_only_a_start_is_recorded_for_a_stopped_service(event: str, status: str) -> None:
    refusal = deploy_refusal("web", status, event)
    assert (refusal is not None) == (status == "stopped")
    if refusal is not None:
        assert refusal.message.startswith("service web is stopped; start it first")
    assert deploy_refusal("web", status, "start") is None


def test_stop_and_start_are_each_others_way_back() -> None:
    """Whatever a service's status, at most one of stop and start is allowed."""
    for status in STATUSES:
        stop = stop_refusal("web", status, "v1") is None
        start = start_refusal("web", status, "v1") is None
        assert not (stop and start)
        assert start == (status == "stopped")
