"""A FROM -> TO table check shared by every entity kind's transition()."""

from __future__ import annotations

from collections.abc import Mapping

from pilothouse.errors import InvalidTransition

Table = Mapping[str, frozenset[str]]


def check_transition(table: Table, entity: str, from_status: str, to_status: str) -> None:
    """Raise InvalidTransition unless `table` allows from_status -> to_status."""
    if to_status not in table:
        raise InvalidTransition(entity, from_status, to_status)
    if to_status not in table.get(from_status, frozenset()):
        raise InvalidTransition(entity, from_status, to_status)


def allowed_targets(table: Table, from_status: str) -> list[str]:
    """The statuses reachable in one step from `from_status`, sorted."""
    return sorted(table.get(from_status, frozenset()))
