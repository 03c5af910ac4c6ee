"""Alert rule decisions, pure: the level of one evaluation, and a rule's status from its recent
levels (M of N to fire, N clear evaluations to recover).

A rule is `expression(metric{tags}) over window` compared (`>` or `<`) against a warning and a
critical level. Each evaluation yields a level: `critical` when the value passes the critical
level, else `warning` when it passes the warning level, else `healthy`; `nodata` when there is no
value. A healthy rule fires at the highest severity that at least M of the last N levels reach;
a firing rule escalates the same way, and eases or recovers only after its last `recover_n`
levels all sit below its current status (so one good evaluation does not close an incident).
`nodata` neither fires nor recovers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Level = Literal["healthy", "warning", "critical", "nodata"]
Status = Literal["healthy", "warning", "critical"]
Comparator = Literal[">", "<"]
SEVERITY: dict[str, int] = {"nodata": -1, "healthy": 0, "warning": 1, "critical": 2}
STATUS_OF_SEVERITY: dict[int, Status] = {0: "healthy", 1: "warning", 2: "critical"}


def passes(value: float, comparator: Comparator, level: float | None) -> bool:
    """True when `value` breaches `level` in the rule's direction (a missing level never)."""
    if level is None:
        return False
    return value > level if comparator == ">" else value < level


def level_of(
    value: float | None, comparator: Comparator, warning: float | None, critical: float | None
) -> Level:
    """The level one evaluation of `value` reaches."""
    if value is None:
        return "nodata"
    if passes(value, comparator, critical):
        return "critical"
    if passes(value, comparator, warning):
        return "warning"
    return "healthy"


def firing(levels: Sequence[str], for_m: int, for_n: int) -> Status:
    """The highest status at least `for_m` of the last `for_n` levels reach."""
    recent = list(levels)[-for_n:] if for_n > 0 else []
    for severity in (2, 1):
        if sum(1 for lv in recent if SEVERITY.get(lv, -1) >= severity) >= for_m:
            return STATUS_OF_SEVERITY[severity]
    return "healthy"


def next_status(
    current: Status, levels: Sequence[str], *, for_m: int, for_n: int, recover_n: int
) -> Status:
    """The rule's status after its latest evaluation (`levels` newest last)."""
    if not 1 <= for_m <= for_n:
        raise ValueError(f"`for` needs 1 <= M <= N, got {for_m} of {for_n}")
    if recover_n < 1:
        raise ValueError("recovery needs at least one evaluation")
    fired = firing(levels, for_m, for_n)
    if SEVERITY[fired] >= SEVERITY[current]:
        return fired
    # Lower than now: ease or recover only once the last recover_n levels are all below now.
    recent = list(levels)[-recover_n:]
    if len(recent) < recover_n or any(lv == "nodata" for lv in recent):
        return current
    if all(SEVERITY[lv] < SEVERITY[current] for lv in recent):
        return STATUS_OF_SEVERITY[max(SEVERITY[fired], max(SEVERITY[lv] for lv in recent))]
    return current


def keep_history(levels: Sequence[str], level: Level, size: int) -> list[str]:
    """`levels` with `level` appended, keeping the newest `size`."""
    return [*levels, level][-max(size, 1) :]


def threshold_status(
    value: float | None, warning: float | None, critical: float | None, comparator: Comparator = ">"
) -> Status:
    """A series' status from its latest value and its thresholds (no value: healthy)."""
    level = level_of(value, comparator, warning, critical)
    return "healthy" if level == "nodata" else level
