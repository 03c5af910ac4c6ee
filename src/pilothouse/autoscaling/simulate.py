"""What-if: replay a metric history through a policy with the same `decide` the evaluator runs.

`replay` (pure) steps through the history one evaluation period at a time, applies each
decision at once (no readiness delay, no rollout), keeps the cooldowns from its own decisions,
and adds up the replica-hours. The history comes from the stored metrics (`stored_points`: the
evaluator's batched CPU/memory read over the whole range, or the policy's own metric period by
period) or from a trace (`trace_points`: CSV rows `timestamp,cpu,memory,value`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pilothouse.autoscaling import evaluate
from pilothouse.autoscaling.evaluate import Subject
from pilothouse.autoscaling.rules import Datapoint, LastEvents, Policy, decide
from pilothouse.core.db import Database
from pilothouse.errors import ValidationFailed


@dataclass(frozen=True)
class Step:
    at: datetime
    action: str
    before: int
    after: int
    reason: str


@dataclass
class Replay:
    start: datetime
    end: datetime
    initial: int
    final: int
    evaluations: int = 0
    replica_hours: float = 0.0
    baseline_replica_hours: float = 0.0  # the initial count kept throughout
    peak: int = 0
    steps: list[Step] = field(default_factory=list)


def replay(
    policy: Policy,
    points: Sequence[Datapoint],
    start: datetime,
    end: datetime,
    initial: int,
) -> Replay:
    """Evaluate every `evaluation_period_seconds` from `start` to `end` over `points`."""
    period = timedelta(seconds=policy.evaluation_period_seconds)
    ordered = sorted(points, key=lambda p: p.end)
    keep = max(math.ceil(policy.window_seconds() / policy.evaluation_period_seconds), 1) + 1
    out = Replay(start=start, end=end, initial=initial, final=initial, peak=initial)
    current = initial
    last = LastEvents()
    cursor = 0
    seen: list[Datapoint] = []
    at = start
    while at < end:
        step_end = min(at + period, end)
        hours = (step_end - at).total_seconds() / 3600
        at = step_end
        while cursor < len(ordered) and ordered[cursor].end <= at:
            seen.append(ordered[cursor])
            cursor += 1
        seen = seen[-keep:]
        decision = decide(policy, seen, current, last, False, at)
        out.evaluations += 1
        if decision.action != "none":
            out.steps.append(Step(at, decision.action, current, decision.after, decision.reason))
            if decision.after > current:
                last = LastEvents(at, last.scale_down_at)
            else:
                last = LastEvents(last.scale_up_at, at)
            current = decision.after
        out.replica_hours += current * hours
        out.baseline_replica_hours += initial * hours
        out.peak = max(out.peak, current)
    out.final = current
    return out


def trace_points(text: str) -> list[Datapoint]:
    """Datapoints from CSV text with a header: `timestamp` (ISO 8601 with offset) and any of
    `cpu`, `memory` (percent) and `value` (the policy's metric); an empty cell is no data."""
    rows = csv.DictReader(io.StringIO(text))
    if rows.fieldnames is None or "timestamp" not in rows.fieldnames:
        raise ValidationFailed("trace", "needs a header with timestamp and cpu, memory or value")
    points = []
    for number, row in enumerate(rows, start=2):

        def cell(name: str, row: dict[str, str] = row, number: int = number) -> float | None:
            text = (row.get(name) or "").strip()
            if not text:
                return None
            try:
                value = float(text)
            except ValueError:
                raise ValidationFailed(f"trace line {number}", f"{name} must be a number") from None
            if not math.isfinite(value):
                raise ValidationFailed(f"trace line {number}", f"{name} must be finite")
            return value

        try:
            at = datetime.fromisoformat(row["timestamp"].strip())
        except ValueError:
            raise ValidationFailed(
                f"trace line {number}", "timestamp must be ISO 8601 with an offset"
            ) from None
        if at.tzinfo is None:
            raise ValidationFailed(f"trace line {number}", "timestamp needs an offset (Z)")
        points.append(Datapoint(at, cell("cpu"), cell("memory"), cell("value")))
    return points


async def stored_points(
    db: Database,
    subject: Subject,
    policy: Policy,
    start: datetime,
    end: datetime,
) -> list[Datapoint]:
    """The per-period datapoints of [start - window, end) from the stored metrics."""
    period = policy.evaluation_period_seconds
    span = (end - start).total_seconds() + policy.window_seconds()
    count = max(math.ceil(span / period), 1)
    if policy.metrics == ("value",):
        return await evaluate.metric_window(db, subject, policy, count, end)
    async with db.session(write=False) as session:
        (found,) = await evaluate.window_lists(session, db, [subject], period, count, end)
    return found
