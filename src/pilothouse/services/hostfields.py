"""Which changes to a service define what runs on the host (admin only).

A service's `command`, and every `driver_config` key except the rollout tuning keys below,
either is a program, names one (build, migration and command-driver scripts, hooks), or shapes
how one runs (`cwd`, `env`). Defining or changing any of them is an admin action; operators
deploy registered artifacts, roll back, scale, set variables and tune rollouts. Unknown keys
count as host fields: a driver added later may read them as programs (fail closed).
"""

from __future__ import annotations

from typing import Any

#: driver_config keys an operator may change: numbers and choices, never a program or a path.
TUNING_KEYS = frozenset(
    {
        "max_surge",
        "max_unavailable",
        "grace_seconds",
        "drain_seconds",
        "verify",
        "timeout",
        "build_timeout",
        "migration_timeout",
        "router",
        "router_port",
    }
)


def host_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names of the host fields that differ between two views of a service (`command` and
    `driver_config.KEY`); a field absent from `after` is left as it was."""
    changed: list[str] = []
    if "command" in after and (after["command"] or None) != (before.get("command") or None):
        changed.append("command")
    if "driver_config" in after:
        old = before.get("driver_config") or {}
        new = after["driver_config"] or {}
        for key in sorted(set(old) | set(new)):
            if key not in TUNING_KEYS and old.get(key) != new.get(key):
                changed.append(f"driver_config.{key}")
    return changed
