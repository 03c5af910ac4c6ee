"""The scaling decision: a pure function of (policy, metric window, current replicas, last
events, rollout in progress, now). The evaluator, `scaling simulate` and the tests call it alike.

Two modes:
- `step` (seed 000): the average CPU or memory (or the policy's metric, relative to its target)
  above `scale_up_threshold` for `datapoints_to_trigger` consecutive periods, and the up-cooldown
  elapsed since the last scale-up -> one more replica; every metric below
  `scale_down_threshold` for as many periods and the down-cooldown elapsed -> one fewer;
- `target` (the Kubernetes HPA rule): `desired = ceil(current * value / target)` over the last
  `datapoints_to_trigger` periods, unchanged while `value / target` is within 0.1 of 1; a
  scale-down takes the highest recommendation of the stabilization window; at most
  `max_step_up` replicas are added and `max_step_down` removed per evaluation.

Always: the result stays within [floor, max_instances] where the floor is `min_instances` or a
scheduled floor in force; nothing is decided on fewer than `datapoints_to_trigger` datapoints;
a missing datapoint never lets a service shrink; a cooldown holds metric-driven changes (bringing
a service back inside [floor, max] does not wait for one); a change the release engine refused
starts its direction's cooldown as a carried-out one does (so it is retried once per cooldown,
not every period), and then holds the way back inside [floor, max] too; while a rollout runs
nothing changes (scale-in is frozen, and the rollout brings up the count the autoscaler last
chose).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any, Literal

from croniter import croniter

#: The target mode's tolerance: |value / target - 1| within it changes nothing (as the HPA).
TOLERANCE = 0.1
BUILTIN = ("cpu_memory", "cpu", "memory")

Action = Literal["scale_up", "scale_down", "none"]


@dataclass(frozen=True)
class Schedule:
    """A scheduled floor: from each time `cron` fires (UTC), for `minutes`, at least
    `min_instances` replicas."""

    cron: str
    minutes: int
    min_instances: int


@dataclass(frozen=True)
class Policy:
    min_instances: int
    max_instances: int
    target_cpu_percent: float = 70.0
    target_memory_percent: float = 75.0
    scale_up_threshold: float = 0.8
    scale_down_threshold: float = 0.4
    scale_up_cooldown_seconds: int = 300
    scale_down_cooldown_seconds: int = 600
    evaluation_period_seconds: int = 300
    datapoints_to_trigger: int = 2
    mode: str = "step"
    metric: str = "cpu_memory"
    metric_stat: str = "avg"
    metric_target: float | None = None
    metric_per_replica: bool = False
    stabilization_seconds: int = 300
    max_step_up: int = 4
    max_step_down: int = 1
    schedules: tuple[Schedule, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, row: Any) -> Policy:
        """From a stored policy row (or anything with its attributes)."""
        return cls(
            min_instances=row.min_instances,
            max_instances=row.max_instances,
            target_cpu_percent=row.target_cpu_percent,
            target_memory_percent=row.target_memory_percent,
            scale_up_threshold=row.scale_up_threshold,
            scale_down_threshold=row.scale_down_threshold,
            scale_up_cooldown_seconds=row.scale_up_cooldown_seconds,
            scale_down_cooldown_seconds=row.scale_down_cooldown_seconds,
            evaluation_period_seconds=row.evaluation_period_seconds,
            datapoints_to_trigger=row.datapoints_to_trigger,
            mode=row.mode,
            metric=row.metric,
            metric_stat=row.metric_stat,
            metric_target=row.metric_target,
            metric_per_replica=row.metric_per_replica,
            stabilization_seconds=row.stabilization_seconds,
            max_step_up=row.max_step_up,
            max_step_down=row.max_step_down,
            schedules=tuple(
                Schedule(s["cron"], int(s["minutes"]), int(s["min_instances"]))
                for s in json_value(row.schedules, [])
            ),
        )

    # Worked out once per policy (cached_property: a policy is frozen, so they never change;
    # the evaluator keeps a policy's Policy between rounds while its row is unchanged).
    @cached_property
    def metrics(self) -> tuple[str, ...]:
        """The metrics the decision reads: cpu, memory, and/or "value" (the policy's metric)."""
        if self.metric == "cpu_memory":
            return ("cpu", "memory")
        if self.metric in ("cpu", "memory"):
            return (self.metric,)
        return ("value",)

    @cached_property
    def periods(self) -> int:
        """How many evaluation periods the decision reads (window_seconds, rounded up)."""
        return max(math.ceil(self.window_seconds() / self.evaluation_period_seconds), 1)

    def window_seconds(self) -> int:
        """How far back the decision looks."""
        span = self.evaluation_period_seconds * self.datapoints_to_trigger
        if self.mode == "target":
            span = max(span, self.stabilization_seconds + self.evaluation_period_seconds)
        return span


@dataclass(frozen=True)
class Datapoint:
    """One evaluation period's averages (None: no data in that period). `cpu` and `memory` are
    percent of the service's resources; `value` is the policy's own metric (per replica when the
    policy says so)."""

    end: datetime
    cpu: float | None = None
    memory: float | None = None
    value: float | None = None

    def get(self, name: str) -> float | None:
        got: float | None = getattr(self, name)
        return got


@dataclass(frozen=True)
class LastEvents:
    """When the service last grew and last shrank (any trigger, successful), and when the
    autoscaler's last attempt either way was refused (a failed event)."""

    scale_up_at: datetime | None = None
    scale_down_at: datetime | None = None
    failed_up_at: datetime | None = None
    failed_down_at: datetime | None = None

    @property
    def changed_at(self) -> datetime | None:
        """The last change either way: the down-cooldown counts from it, so a service that
        just grew is not shrunk before the cooldown (the seed's "since the last scale-down"
        holds too)."""
        return _latest(self.scale_up_at, self.scale_down_at)


def _latest(*times: datetime | None) -> datetime | None:
    known = [at for at in times if at is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class Decision:
    action: Action
    before: int
    after: int
    reason: str
    cpu: float | None = None  # CPU percent average over the datapoints used
    memory: float | None = None


def json_value(value: Any, empty: Any) -> Any:
    """A JSON column's value, also when read as text (the evaluator reads it so, to decode only
    the few that are not empty)."""
    if isinstance(value, str):
        return json.loads(value) if value not in ("", "[]", "{}", "null") else empty
    return empty if value is None else value


# -- sentences ---------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def duration(seconds: int) -> str:
    """90 -> "90 seconds", 600 -> "10 minutes", 3600 -> "1 hour"."""

    def unit(n: int, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    if seconds >= 3600 and seconds % 3600 == 0:
        return unit(seconds // 3600, "hour")
    if seconds >= 60 and seconds % 60 == 0:
        return unit(seconds // 60, "minute")
    return unit(seconds, "second")


def number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2g}"


def label(policy: Policy, name: str) -> str:
    if name == "cpu":
        return "CPU"
    if name == "memory":
        return "memory"
    suffix = " per replica" if policy.metric_per_replica else ""
    stat = "" if policy.metric_stat == "avg" else f"{policy.metric_stat} "
    return f"{stat}{policy.metric}{suffix}"


def shown(name: str, value: float) -> str:
    return f"{number(value)}%" if name in ("cpu", "memory") else number(value)


def threshold(policy: Policy, name: str, level: float) -> str:
    """A step threshold (a fraction, 0-1) as a person reads it: 0.8 -> "80%" for CPU and
    memory, 0.8 of a named metric's target 1000 -> "800"."""
    if name in ("cpu", "memory"):
        return f"{number(level * 100)}%"
    return number(level * (policy.metric_target or 0.0))


def thresholds(policy: Policy) -> str:
    """What the policy's decisions compare against, worded as they word it: step mode
    "up above 80%, down below 40%" (`threshold`, on its first metric), target mode
    "target CPU 70%, memory 75%" or "target queue_depth 10"."""
    if policy.mode == "target":
        return "target " + ", ".join(
            f"{label(policy, name)} {shown(name, target)}"
            for name in policy.metrics
            if (target := target_of(policy, name)) is not None
        )
    name = policy.metrics[0]
    return (
        f"up above {threshold(policy, name, policy.scale_up_threshold)}, "
        f"down below {threshold(policy, name, policy.scale_down_threshold)}"
    )


# -- helpers -----------------------------------------------------------------------------------


def target_of(policy: Policy, name: str) -> float | None:
    if name == "cpu":
        return policy.target_cpu_percent
    if name == "memory":
        return policy.target_memory_percent
    return policy.metric_target


def step_ratio(policy: Policy, name: str, value: float) -> float | None:
    """A value as the seed's utilization (0.8 = 80%): percent / 100 for CPU and memory, value /
    metric_target for another metric (None without a target)."""
    if name in ("cpu", "memory"):
        return value / 100.0
    target = policy.metric_target
    return value / target if target else None


NO_FLOOR: tuple[int, Schedule | None] = (0, None)


def scheduled_floor(schedules: Sequence[Schedule], now: datetime) -> tuple[int, Schedule | None]:
    """The highest scheduled floor in force at `now` (0 and None when none is)."""
    best: tuple[int, Schedule | None] = (0, None)
    for s in schedules:
        fired: datetime = croniter(s.cron, now + timedelta(seconds=1)).get_prev(datetime)
        if now < fired + timedelta(minutes=s.minutes) and s.min_instances > best[0]:
            best = (s.min_instances, s)
    return best


def _mean(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def _elapsed(since: datetime | None, now: datetime, seconds: int) -> bool:
    return since is None or (now - since).total_seconds() >= seconds


def cooldown(policy: Policy, last: LastEvents, up: bool, now: datetime) -> str | None:
    """Why a metric-driven change that way must wait (None: it need not). The up-cooldown
    counts from the last scale-up, the down-cooldown from the last change either way; both
    also from the last refused attempt that way, so a refusal (no capacity, a rollout in
    between) is retried once per cooldown, not every period with a failed event and an alert."""
    if up:
        seconds, done = policy.scale_up_cooldown_seconds, last.scale_up_at
        failed = last.failed_up_at
    else:
        seconds, done = policy.scale_down_cooldown_seconds, last.changed_at
        failed = last.failed_down_at
    way = "scale-up" if up else "scale-down"
    if not _elapsed(failed, now, seconds):
        return f"{way} cooldown still running after a refused attempt"
    if not _elapsed(done, now, seconds):
        return f"{way} cooldown still running"
    return None


def refused_lately(policy: Policy, last: LastEvents, up: bool, now: datetime) -> bool:
    """Whether the last attempt that way was refused within its cooldown: then even a change
    back inside [floor, max] (which otherwise waits for no cooldown) waits."""
    if up:
        return not _elapsed(last.failed_up_at, now, policy.scale_up_cooldown_seconds)
    return not _elapsed(last.failed_down_at, now, policy.scale_down_cooldown_seconds)


def recommend(policy: Policy, current: int, point: Datapoint) -> int | None:
    """The target mode's replica count for one datapoint (the highest over its metrics), None
    when a metric has no value."""
    best = 0
    for name in policy.metrics:
        value = point.get(name)
        target = target_of(policy, name)
        if value is None or not target:
            return None
        ratio = value / target
        wanted = current if abs(ratio - 1.0) <= TOLERANCE else math.ceil(current * ratio)
        best = max(best, wanted)
    return best


# -- the decision ------------------------------------------------------------------------------


def decide(
    policy: Policy,
    window: Sequence[Datapoint],
    current: int,
    last_events: LastEvents,
    rollout_in_progress: bool,
    now: datetime,
) -> Decision:
    """What to do now; `window` is the per-period datapoints, oldest first."""
    floor_extra, schedule = scheduled_floor(policy.schedules, now) if policy.schedules else NO_FLOOR
    floor = min(max(policy.min_instances, floor_extra), policy.max_instances)
    n = policy.datapoints_to_trigger
    recent = [p for p in window if p.end <= now][-n:]
    cpu = _mean([p.cpu for p in recent])
    memory = _mean([p.memory for p in recent])

    def none(reason: str) -> Decision:
        return Decision("none", current, current, reason, cpu, memory)

    def change(after: int, reason: str) -> Decision:
        action: Action = "scale_up" if after > current else "scale_down"
        return Decision(action, current, after, reason, cpu, memory)

    if rollout_in_progress:
        return none(
            "a rollout is in progress: scale-in is frozen and the rollout brings up the "
            f"{current} replicas last chosen"
        )
    if current < floor:
        why = (
            f"scheduled floor {floor} ({schedule.cron}, {duration(schedule.minutes * 60)})"
            if schedule is not None and floor_extra > policy.min_instances
            else f"min_instances is {floor}"
        )
        if refused_lately(policy, last_events, True, now):
            return none(f"below the floor: {why}; retried after the scale-up cooldown (refused)")
        return change(floor, f"below the floor: {why}")
    if current > policy.max_instances:
        why = f"above max_instances {policy.max_instances}"
        if refused_lately(policy, last_events, False, now):
            return none(f"{why}; retried after the scale-down cooldown (refused)")
        return change(policy.max_instances, why)
    if len(recent) < n:
        return none(f"only {len(recent)} of {n} datapoints so far")
    span = duration(n * policy.evaluation_period_seconds)
    if policy.mode == "target":
        return _target(policy, window, recent, current, floor, last_events, now, span, none, change)
    return _step(policy, recent, current, floor, last_events, now, span, none, change)


def _step(
    policy: Policy,
    recent: Sequence[Datapoint],
    current: int,
    floor: int,
    last: LastEvents,
    now: datetime,
    span: str,
    none: Callable[[str], Decision],
    change: Callable[[int, str], Decision],
) -> Decision:
    high: list[tuple[str, float]] = []
    low = True
    up, down = policy.scale_up_threshold, policy.scale_down_threshold
    for name in policy.metrics:
        # Every period's value as a ratio (step_ratio); a missing one (or a metric without a
        # target) is neither high nor low.
        values = [getattr(p, name) for p in recent]
        if None in values:
            low = False
            continue
        if name in ("cpu", "memory"):
            ratios = [v / 100.0 for v in values]
        elif policy.metric_target:
            target = policy.metric_target
            ratios = [v / target for v in values]
        else:
            low = False
            continue
        if all(r > up for r in ratios):
            high.append((name, sum(values) / len(values)))
        if not all(r < down for r in ratios):
            low = False

    if high:
        name, avg = max(high, key=lambda h: h[1])
        reason = (
            f"{label(policy, name)} {shown(name, avg)} average for {span} "
            f"(threshold {threshold(policy, name, policy.scale_up_threshold)})"
        )
        if current >= policy.max_instances:
            return none(f"{reason}; already at max_instances {policy.max_instances}")
        if held := cooldown(policy, last, True, now):
            return none(f"{reason}; {held}")
        return change(current + 1, reason)
    if low:
        parts = [
            f"{label(policy, name)} {shown(name, v)}"
            for name in policy.metrics
            if (v := _mean([p.get(name) for p in recent])) is not None
        ]
        level = threshold(policy, policy.metrics[0], policy.scale_down_threshold)
        reason = f"{' and '.join(parts)} average for {span} (threshold {level})"
        if current <= floor:
            return none(f"{reason}; already at the floor {floor}")
        if held := cooldown(policy, last, False, now):
            return none(f"{reason}; {held}")
        return change(current - 1, reason)
    return none(f"within thresholds over {span}")


def _target(
    policy: Policy,
    window: Sequence[Datapoint],
    recent: Sequence[Datapoint],
    current: int,
    floor: int,
    last: LastEvents,
    now: datetime,
    span: str,
    none: Callable[[str], Decision],
    change: Callable[[int, str], Decision],
) -> Decision:
    averaged = Datapoint(
        end=now,
        cpu=_mean_all([p.cpu for p in recent]),
        memory=_mean_all([p.memory for p in recent]),
        value=_mean_all([p.value for p in recent]),
    )
    wanted = recommend(policy, current, averaged)
    parts = []
    for name in policy.metrics:
        v = averaged.get(name)
        t = target_of(policy, name)
        if v is not None and t:
            parts.append(
                f"{label(policy, name)} {shown(name, v)} average for {span} "
                f"(target {shown(name, t)})"
            )
    described = "; ".join(parts)
    if wanted is None:
        # Scale up on what is known (missing memory must not hide a CPU surge); never down.
        known = [
            math.ceil(current * v / t)
            for name in policy.metrics
            if (v := averaged.get(name)) is not None
            and (t := target_of(policy, name))
            and abs(v / t - 1.0) > TOLERANCE
        ]
        if not known or max(known) <= current:
            return none("missing data: not enough to scale down")
        wanted = max(known)
    if wanted > current:
        after = min(wanted, current + policy.max_step_up, policy.max_instances)
        if after <= current:
            return none(f"{described}; already at max_instances {policy.max_instances}")
        if held := cooldown(policy, last, True, now):
            return none(f"{described}; {held}")
        limited = f", at most +{policy.max_step_up} per period" if after < wanted else ""
        return change(after, f"{described}: {wanted} replicas wanted{limited}")
    if wanted == current:
        return none(f"{described}: within the {TOLERANCE:.0%} tolerance" if described else "")
    # Down: the highest recommendation over the stabilization window, all data present.
    start = now - timedelta(seconds=policy.stabilization_seconds)
    stable = wanted
    for point in window:
        if start < point.end <= now:
            rec = recommend(policy, current, point)
            if rec is None:
                return none(f"{described}; missing data in the stabilization window")
            stable = max(stable, rec)
    after = max(stable, current - policy.max_step_down, floor)
    if after >= current:
        why = (
            f"stabilization window ({duration(policy.stabilization_seconds)}) holds {stable}"
            if stable >= current
            else f"already at the floor {floor}"
        )
        return none(f"{described}; {why}")
    if held := cooldown(policy, last, False, now):
        return none(f"{described}; {held}")
    return change(after, f"{described}: {stable} replicas wanted")


def _mean_all(values: Sequence[float | None]) -> float | None:
    """The mean when every value is present, else None."""
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None) / len(values)
