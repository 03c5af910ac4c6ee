"""Seed 002 EnvironmentLimits.max_deployment_frequency: deployments per service per hour.

A pure rule. Only releases forward count and are checked: a rollback (manual or automatic) is
the way out of a bad release and is never refused by the limit, nor does it use up the hour's
allowance; a scale changes no release and an urgent scale-up must never wait either, nor may
stopping or starting a service (`service stop` / `service start`: the same release).
"""

from __future__ import annotations

EXEMPT: frozenset[str] = frozenset({"rollback", "scale", "stop", "start"})


def counts(event_type: str) -> bool:
    """Whether a deployment of `event_type` counts toward (and is checked against) the limit."""
    return event_type not in EXEMPT


def refusal(event_type: str, *, recent: int, per_hour: int | None, environment: str) -> str | None:
    """Why a deployment of `event_type` is refused, or None. `recent` counts only the counted events
    of the service in the last hour."""
    if not per_hour or not counts(event_type) or recent < per_hour:
        return None
    return (
        f"environment {environment!r} allows {per_hour} deployment(s) per hour per service; "
        f"{recent} in the last hour (rollbacks are exempt: `pilothouse rollback` still works)"
    )
