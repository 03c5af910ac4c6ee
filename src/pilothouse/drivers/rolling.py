"""The rolling-update plan: how many replicas to start and to retire, step by step. Pure.

A rollout keeps the live replicas of the target version (`keep`), starts the missing ones and
retires the `old` ones. Each step may first retire old replicas ahead of their replacements
(only with `max_unavailable`), then starts a batch of new replicas together (each one health
gated), then retires as many old replicas as it started, in the same router change that puts
the new ones in. Whatever is left of the old set is retired at the end (`retire_last`).

Guarantees, with `initial = keep + old`, `target` the wanted count and `surge = max(max_surge, 1)`
(a rollout must make progress, so a surge of 0 counts as 1):
- exactly `max(0, target - keep)` replicas are started and each old replica is retired once;
- the replicas serving never drop below `min(initial, target - max_unavailable)`, so with the
  default `max_unavailable = 0` a rollout never serves fewer replicas than it started with;
- serving plus starting replicas never exceed `max(initial, target) + surge`.
The driver assumes each started replica becomes ready; a replica that does not fails the rollout.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One step: retire `retire_first` old replicas, start `start` new ones together, then
    retire `retire_after` old ones once the new ones are ready."""

    retire_first: int
    start: int
    retire_after: int


@dataclass(frozen=True)
class RollingPlan:
    steps: tuple[Step, ...]
    retire_last: int  # old replicas still serving after the last step, retired at the end


def plan_rolling_update(
    *, keep: int, old: int, target: int, max_surge: int, max_unavailable: int
) -> RollingPlan:
    """The steps that take `keep + old` serving replicas to `target` replicas of the new version
    within the surge and availability bounds above."""
    if min(keep, old, target, max_surge, max_unavailable) < 0:
        raise ValueError("counts and bounds must not be negative")
    missing = max(0, target - keep)
    surge = max(max_surge, 1)
    initial = keep + old
    floor = max(0, min(initial, target - max_unavailable))
    serving, old_left, started = initial, old, 0
    steps: list[Step] = []
    while started < missing:
        first = min(old_left, max(0, serving - floor)) if max_unavailable else 0
        serving -= first
        old_left -= first
        # Start the surge, plus as many as are down below where the rollout began.
        room = surge + max(0, min(initial, target) - serving)
        batch = min(missing - started, room)
        after = min(batch, old_left)
        serving += batch - after
        old_left -= after
        started += batch
        steps.append(Step(first, batch, after))
    return RollingPlan(tuple(steps), old_left)
