"""The plan: what applying a file would change, as a pure function of (desired, live).

Both states have one shape: `{kind: {key: {field: value}}}`, values plain JSON (or `Secret`,
compared by digest and never shown). A key in `desired` and not in `live` is a create; in both
with a different value for some field, an update listing each changed field, nested mappings
down to their leaves (`resources.cpu_cores: 0.5 -> 1`); in `live` only, a delete when `prune`
is asked for, otherwise it is listed as unmanaged. Creates and updates come in dependency
order (environments before what lives in them), deletes in the reverse order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: Creation order: every kind after those it refers to.
KINDS = (
    "environment",
    "requirement",
    "service",
    "scaling_policy",
    "domain",
    "backup_target",
    "alert_rule",
    "channel",
)

State = dict[str, dict[str, dict[str, Any]]]
Action = Literal["create", "update", "delete"]


class _Absent:
    """A mapping key present on one side only."""

    def __repr__(self) -> str:
        return "(unset)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Secret:
    """A secret value in a state: equal when the digests are equal; `source` says where the
    file takes it from (a variable), and is what is shown."""

    digest: str
    source: str = field(default="", compare=False)

    def __repr__(self) -> str:
        return f"<secret from {self.source}>" if self.source else "<secret>"


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    key: str
    fields: tuple[FieldChange, ...] = ()

    def top_fields(self) -> list[str]:
        """The top-level fields touched, in order, each once."""
        seen: list[str] = []
        for change in self.fields:
            top = change.path.split(".", 1)[0]
            if top not in seen:
                seen.append(top)
        return seen


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    #: Live objects the file does not mention (deleted only with --prune), as (kind, key).
    unmanaged: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0}
        for change in self.changes:
            out[change.action] += 1
        return out


def diff_values(before: Any, after: Any, path: str) -> list[FieldChange]:
    """The leaves that differ between two values (mappings are compared key by key)."""
    if isinstance(before, dict) and isinstance(after, dict) and (before or after):
        out: list[FieldChange] = []
        for key in sorted(set(before) | set(after), key=str):
            out.extend(
                diff_values(before.get(key, ABSENT), after.get(key, ABSENT), f"{path}.{key}")
            )
        return out
    if _same(before, after):
        return []
    return [FieldChange(path, before, after)]


def _same(a: Any, b: Any) -> bool:
    # 1 and 1.0 are the same setting; True and 1 are not.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def diff_object(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldChange, ...]:
    """Field-level differences over the fields `after` manages."""
    out: list[FieldChange] = []
    for name, value in after.items():
        out.extend(diff_values(before.get(name, ABSENT), value, name))
    return tuple(out)


def make_plan(desired: State, live: State, *, prune: bool = False) -> Plan:
    """What to do so `live` becomes `desired` (deletes only when `prune`)."""
    ahead: list[Change] = []
    gone: list[Change] = []
    unmanaged: list[tuple[str, str]] = []
    for kind in KINDS:
        want = desired.get(kind, {})
        have = live.get(kind, {})
        for key in sorted(want):
            if key not in have:
                created = tuple(FieldChange(n, ABSENT, v) for n, v in want[key].items())
                ahead.append(Change("create", kind, key, created))
                continue
            changed = diff_object(have[key], want[key])
            if changed:
                ahead.append(Change("update", kind, key, changed))
        for key in sorted(set(have) - set(want)):
            if prune:
                gone.append(Change("delete", kind, key))
            else:
                unmanaged.append((kind, key))
    return Plan(tuple(ahead + gone[::-1]), tuple(unmanaged))
