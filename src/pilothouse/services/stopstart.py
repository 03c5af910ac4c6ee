"""When a service may be stopped, started, or deployed to: pure decisions over plain values.

`pilothouse service stop` takes a service with a live release (running, or failed and crash
looping) to `stopped`: its replicas are drained and stopped and its router entry removed, and
they stay stopped (no crash restart, no probe, no downtime) until `pilothouse service start`
brings the live release back. While a service is stopped, anything else that would start
replicas (a deploy, a rollback, a restart, a scale rollout) is refused with 409: starting it is
an explicit act, never the side effect of a CI pipeline's deploy.

Each function returns why the action is refused (a Refusal carrying the 409's message and its
from/to detail), or None when it may go ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Event types that may be recorded for a stopped service (the start itself).
WHILE_STOPPED = frozenset({"start"})


@dataclass(frozen=True)
class Refusal:
    """A 409: the message, and the transition refused (from, to)."""

    message: str
    from_status: str
    to_status: str

    @property
    def detail(self) -> dict[str, Any]:
        return {"entity": "service", "from": self.from_status, "to": self.to_status}


def stop_refusal(
    name: str, status: str, live_version: str | None, *, can_stop: bool = True
) -> Refusal | None:
    """Why service `name` (in `status`, with `live_version` live) may not be stopped."""
    if status == "stopped":
        return Refusal(
            f"service {name} is already stopped: cannot go from 'stopped' to 'stopped' "
            f"(`pilothouse service start {name}` brings it back)",
            status,
            "stopped",
        )
    if live_version is None or status == "pending":
        return Refusal(
            f"service {name} has no live release (it is {status}, nothing was deployed "
            f"successfully): cannot go from {status!r} to 'stopped'; there is nothing to stop",
            status,
            "stopped",
        )
    if not can_stop:
        return Refusal(
            f"service {name} runs on a driver that cannot stop it: cannot go from {status!r} "
            "to 'stopped'; give it a `stop_command` in its driver_config (admin)",
            status,
            "stopped",
        )
    return None


def start_refusal(name: str, status: str, live_version: str | None) -> Refusal | None:
    """Why service `name` may not be started (only a stopped service is)."""
    if status != "stopped":
        hint = (
            "it is already running"
            if status in ("running", "scheduled")
            else "deploy, roll back or restart it instead"
        )
        return Refusal(
            f"service {name} is {status}, not stopped: `service start` goes from 'stopped' to "
            f"'running', not from {status!r}; {hint}",
            status,
            "running",
        )
    if live_version is None:
        return Refusal(
            f"service {name} has no release to start (its last live artifact is gone): "
            "cannot go from 'stopped' to 'running'",
            status,
            "running",
        )
    return None


def deploy_refusal(name: str, status: str, event_type: str) -> Refusal | None:
    """Why a deployment of `event_type` may not be recorded for service `name` in `status`:
    a stopped service is started first, explicitly."""
    if status == "stopped" and event_type not in WHILE_STOPPED:
        return Refusal(
            f"service {name} is stopped; start it first (`pilothouse service start {name}`): "
            f"a {event_type} cannot go from 'stopped' to 'running'",
            status,
            "running",
        )
    return None
