"""What changed between two releases' config: pure functions over plain values.

A release's variables are pins (name, source, version, never a value; variables.service.Pin);
its driver settings are a snapshot taken when it ran (`driver_snapshot`), in which
`driver_config.env` is kept by name only, a value that looks secret is masked and a credential
inside any other value (a DSN in a command) is masked in place. So neither
side of a diff holds a secret, and nothing here can print one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pilothouse.core.urls import mask_text
from pilothouse.variables.rules import looks_secret
from pilothouse.variables.service import Pin

MASK = "********"
Change = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class VarChange:
    """One variable that differs: by name, source and version (or a flag's state)."""

    key: str
    change: Change
    source_from: str | None
    source_to: str | None
    version_from: str | None  # "v3", "on"/"off" for a flag, "-" for config.env (no versions)
    version_to: str | None
    is_secret: bool


@dataclass(frozen=True)
class SettingChange:
    """One driver setting that differs; a masked value is shown as `********`."""

    key: str
    change: Change
    before: str | None
    after: str | None


def pin_label(pin: Pin) -> str:
    """How a pin's version is shown: `v3`, `on`/`off` for a flag, `-` for config.env."""
    if pin.source == "feature":
        return "on" if pin.enabled else "off"
    if pin.source == "config" or pin.version is None:
        return "-"
    return f"v{pin.version}"


def _identity(pin: Pin) -> tuple[Any, ...]:
    """What makes two pins the same: a variable set again after an unset is a new row whose
    versions start again at 1, so the row counts as well as the version."""
    return (pin.source, pin.var_id, pin.version, pin.enabled)


def diff_pins(before: Sequence[Pin], after: Sequence[Pin]) -> list[VarChange]:
    """Variables added, removed, or delivered at another version (or source), sorted by key."""
    a = {p.key: p for p in before}
    b = {p.key: p for p in after}
    changes = []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key), b.get(key)
        if old is not None and new is not None and _identity(old) == _identity(new):
            continue
        change: Change = "added" if old is None else "removed" if new is None else "changed"
        changes.append(
            VarChange(
                key=key,
                change=change,
                source_from=old.source if old else None,
                source_to=new.source if new else None,
                version_from=pin_label(old) if old else None,
                version_to=pin_label(new) if new else None,
                is_secret=bool((old and old.is_secret) or (new and new.is_secret)),
            )
        )
    return changes


def _safe(key: str, value: Any) -> Any:
    """A setting safe to store and show: masked whole when it looks secret (its name, or a URL
    or DSN with a credential); otherwise every credential inside it masked where it stands (a
    DSN inside a command), nested lists and mappings included."""
    if looks_secret(key):
        return MASK
    if isinstance(value, str):
        return MASK if looks_secret(key, value) else mask_text(value)
    if isinstance(value, Mapping):
        return {str(k): _safe(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(key, v) for v in value]
    return value


def _shown(key: str, value: Any) -> str:
    safe = _safe(key, value)
    return safe if isinstance(safe, str) else json.dumps(safe, sort_keys=True)


def driver_snapshot(
    driver: str, driver_config: Mapping[str, Any] | None, target_replicas: int
) -> dict[str, Any]:
    """The driver settings a release runs with, safe to store and show: `driver_config.env`
    by name only, any value that looks secret (by its name or as a URL with a credential)
    masked, and a credential inside any other value (a DSN in a command) masked in place."""
    config = dict(driver_config or {})
    env = config.pop("env", None)
    snapshot: dict[str, Any] = {
        "driver": driver,
        "target_replicas": target_replicas,
        "config": {k: _safe(k, config[k]) for k in sorted(config)},
    }
    if isinstance(env, Mapping):
        snapshot["env"] = sorted(str(k) for k in env)
    return snapshot


def _flatten(snapshot: Mapping[str, Any] | None) -> dict[str, str]:
    if not snapshot:
        return {}
    flat = {
        "driver": str(snapshot.get("driver")),
        "target_replicas": str(snapshot.get("target_replicas")),
    }
    for key, value in (snapshot.get("config") or {}).items():
        flat[f"driver_config.{key}"] = _shown(key, value)
    for name in snapshot.get("env") or []:
        flat[f"driver_config.env.{name}"] = "(set)"
    return flat


def diff_settings(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[SettingChange]:
    """Driver settings added, removed or changed between two snapshots, sorted by key. Masked
    values compare equal (their change cannot be seen); driver_config.env by presence only."""
    a, b = _flatten(before), _flatten(after)
    changes = []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key), b.get(key)
        if old == new:
            continue
        change: Change = "added" if old is None else "removed" if new is None else "changed"
        changes.append(SettingChange(key, change, old, new))
    return changes
