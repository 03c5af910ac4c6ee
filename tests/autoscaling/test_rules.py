"""The scaling decision: table tests for both modes, scheduled floors, the rollout freeze, and
hypothesis properties (never outside min/max, never during a cooldown, also one started by a
refused attempt, never on fewer than datapoints_to_trigger datapoints, missing data never
scales down)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.autoscaling.rules import (
    Datapoint,
    LastEvents,
    Policy,
    Schedule,
    decide,
    duration,
    scheduled_floor,
    thresholds,
)

NOW = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)  # a Wednesday
STEP = Policy(
    min_instances=2,
    max_instances=10,
    scale_up_threshold=0.80,
    scale_down_threshold=0.40,
    scale_up_cooldown_seconds=300,
    scale_down_cooldown_seconds=600,
    evaluation_period_seconds=300,
    datapoints_to_trigger=2,
)
TARGET = replace(STEP, mode="target", metric="cpu", target_cpu_percent=50.0)


def points(*cpu: float | None, memory: float | None = 50.0, period: int = 300) -> list[Datapoint]:
    n = len(cpu)
    return [
        Datapoint(NOW - timedelta(seconds=period * (n - 1 - i)), cpu=c, memory=memory)
        for i, c in enumerate(cpu)
    ]


def test_duration_and_floor() -> None:
    assert (
        duration(600) == "10 minutes"
        and duration(3600) == "1 hour"
        and duration(90) == "90 seconds"
    )
    business = Schedule("0 9 * * 1-5", 540, 5)
    assert scheduled_floor([business], NOW) == (5, business)
    assert scheduled_floor([business], NOW.replace(hour=18, minute=1))[0] == 0
    assert scheduled_floor([business], NOW + timedelta(days=3))[0] == 0  # Saturday


def test_step_mode_table() -> None:
    quiet = LastEvents()
    cases: list[tuple[Policy, list[Datapoint], int, LastEvents, bool, str, int, str]] = [
        # policy, window, current, last, rollout, action, after, words in the reason
        (
            STEP,
            points(82, 85),
            3,
            quiet,
            False,
            "scale_up",
            4,
            "CPU 84% average for 10 minutes (threshold 80%)",
        ),
        (STEP, points(82, 70), 3, quiet, False, "none", 3, "within thresholds"),
        (STEP, points(85), 3, quiet, False, "none", 3, "only 1 of 2 datapoints"),
        (STEP, points(None, 90), 3, quiet, False, "none", 3, "within thresholds"),
        (STEP, points(90, 90), 10, quiet, False, "none", 10, "already at max_instances 10"),
        (
            STEP,
            points(90, 90),
            3,
            LastEvents(scale_up_at=NOW - timedelta(seconds=100)),
            False,
            "none",
            3,
            "scale-up cooldown",
        ),
        (
            STEP,
            points(90, 90),
            3,
            LastEvents(scale_up_at=NOW - timedelta(seconds=300)),
            False,
            "scale_up",
            4,
            "CPU",
        ),
        (
            STEP,
            points(20, 25, memory=30),
            4,
            quiet,
            False,
            "scale_down",
            3,
            "CPU 22% and memory 30% average for 10 minutes (threshold 40%)",
        ),
        (STEP, points(20, 25, memory=60), 4, quiet, False, "none", 4, "within thresholds"),
        (STEP, points(20, 25, memory=None), 4, quiet, False, "none", 4, "within thresholds"),
        (STEP, points(20, 25, memory=30), 2, quiet, False, "none", 2, "already at the floor 2"),
        (
            STEP,
            points(20, 25, memory=30),
            4,
            LastEvents(scale_down_at=NOW - timedelta(seconds=599)),
            False,
            "none",
            4,
            "scale-down cooldown",
        ),
        # ... counted from a scale-up too: just grown, not shrunk before the cooldown
        (
            STEP,
            points(20, 25, memory=30),
            4,
            LastEvents(scale_up_at=NOW - timedelta(seconds=60)),
            False,
            "none",
            4,
            "scale-down cooldown",
        ),
        (STEP, points(20, 25, memory=30), 4, quiet, True, "none", 4, "rollout is in progress"),
        (STEP, points(90, 90), 4, quiet, True, "none", 4, "scale-in is frozen"),
        (STEP, points(50, 50), 1, quiet, False, "scale_up", 2, "min_instances is 2"),
        (STEP, points(50, 50), 12, quiet, False, "scale_down", 10, "above max_instances 10"),
        # memory high alone is enough to grow
        (STEP, points(10, 10, memory=95), 3, quiet, False, "scale_up", 4, "memory 95% average"),
        # a custom metric, relative to its target: 900 requests/s per replica vs target 1000
        (
            replace(
                STEP,
                metric="http_requests",
                metric_stat="rate",
                metric_target=1000.0,
                metric_per_replica=True,
            ),
            [Datapoint(NOW - timedelta(seconds=300), value=900.0), Datapoint(NOW, value=950.0)],
            3,
            quiet,
            False,
            "scale_up",
            4,
            "rate http_requests per replica 925 average for 10 minutes (threshold 800)",
        ),
    ]
    for policy, window, current, last, rollout, action, after, words in cases:
        got = decide(policy, window, current, last, rollout, NOW)
        assert (got.action, got.after) == (action, after), (words, got)
        assert words in got.reason, (words, got.reason)


def test_target_mode_table() -> None:
    quiet = LastEvents()
    cases: list[tuple[Policy, list[Datapoint], int, LastEvents, str, int, str]] = [
        # 90% vs target 50% on 4 replicas: ceil(4 * 1.8) = 8, limited to +4 per period
        (
            TARGET,
            points(90, 90),
            4,
            quiet,
            "scale_up",
            8,
            "CPU 90% average for 10 minutes (target 50%): 8 replicas wanted",
        ),
        (
            replace(TARGET, max_step_up=2),
            points(100, 100),
            4,
            quiet,
            "scale_up",
            6,
            "8 replicas wanted, at most +2 per period",
        ),
        (replace(TARGET, max_instances=6), points(100, 100), 4, quiet, "scale_up", 6, "wanted"),
        # within the 0.1 tolerance
        (TARGET, points(54, 54), 4, quiet, "none", 4, "tolerance"),
        (TARGET, points(46, 46), 4, quiet, "none", 4, "tolerance"),
        # 20% vs 50% on 5: ceil(2) = 2, at most -1 per period
        (TARGET, points(20, 20), 5, quiet, "scale_down", 4, "2 replicas wanted"),
        (
            replace(TARGET, max_step_down=5),
            points(20, 20),
            5,
            quiet,
            "scale_down",
            2,
            "2 replicas wanted",
        ),
        # stabilization: a high recommendation 4 minutes ago holds the count
        (
            replace(TARGET, max_step_down=5),
            points(90, 20, 20, period=120),
            5,
            quiet,
            "none",
            5,
            "stabilization window",
        ),
        # missing data never shrinks
        (TARGET, points(None, 20), 5, quiet, "none", 5, "missing data"),
        (
            replace(TARGET, metric="cpu_memory"),
            points(20, 20, memory=None),
            5,
            quiet,
            "none",
            5,
            "missing data",
        ),
        # ... but known high CPU still grows with memory missing
        (
            replace(TARGET, metric="cpu_memory"),
            points(100, 100, memory=None),
            2,
            quiet,
            "scale_up",
            4,
            "CPU 100%",
        ),
        (TARGET, points(90, 90), 4, LastEvents(scale_up_at=NOW), "none", 4, "cooldown"),
    ]
    for policy, window, current, last, action, after, words in cases:
        got = decide(policy, window, current, last, False, NOW)
        assert (got.action, got.after) == (action, after), (words, got)
        assert words in got.reason, (words, got.reason)


def test_scheduled_floor_raises_the_count_in_business_hours() -> None:
    policy = replace(STEP, schedules=(Schedule("0 9 * * 1-5", 540, 6),))
    got = decide(policy, points(20, 20, memory=20), 3, LastEvents(), False, NOW)
    assert (got.action, got.after) == ("scale_up", 6)
    assert "scheduled floor 6 (0 9 * * 1-5, 9 hours)" in got.reason
    # ... and holds it against low load
    assert decide(policy, points(5, 5, memory=5), 6, LastEvents(), False, NOW).action == "none"
    evening = NOW.replace(hour=20)
    assert decide(policy, points(5, 5, memory=5), 6, LastEvents(), False, evening).after == 5


values = st.one_of(st.none(), st.floats(min_value=0, max_value=300, allow_nan=False))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Policy, list[Datapoint], int, LastEvents]:
    low = draw(st.integers(1, 10))
    high = draw(st.integers(low, 20))
    mode = draw(st.sampled_from(["step", "target"]))
    metric = draw(st.sampled_from(["cpu_memory", "cpu", "queue"]))
    policy = replace(
        STEP,
        min_instances=low,
        max_instances=high,
        mode=mode,
        metric=metric,
        metric_target=10.0,
        datapoints_to_trigger=draw(st.integers(1, 4)),
        evaluation_period_seconds=60,
        stabilization_seconds=draw(st.sampled_from([0, 120])),
        max_step_up=draw(st.integers(1, 5)),
        max_step_down=draw(st.integers(1, 5)),
    )
    n = draw(st.integers(0, 6))
    window = [
        Datapoint(
            NOW - timedelta(seconds=60 * (n - 1 - i)), draw(values), draw(values), draw(values)
        )
        for i in range(n)
    ]
    current = draw(st.integers(low, high))
    since = st.one_of(st.none(), st.integers(0, 1200).map(lambda s: NOW - timedelta(seconds=s)))
    return policy, window, current, LastEvents(*(draw(since) for _ in range(4)))


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.booleans())
def test_properties(
    scenario: tuple[Policy, list[Datapoint], int, LastEvents], rollout: bool
) -> None:
    policy, window, current, last = scenario
    got = decide(policy, window, current, last, rollout, NOW)
    assert policy.min_instances <= got.after <= policy.max_instances
    assert got.reason
    if got.action == "none":
        assert got.after == current
        return
    assert not rollout
    n = policy.datapoints_to_trigger
    used = window[-n:]
    assert len(used) >= n  # never on fewer datapoints
    if got.action == "scale_up":
        assert got.after > current
        for at in (last.scale_up_at, last.failed_up_at):  # a refused attempt counts too
            assert at is None or (NOW - at).total_seconds() >= 300
    else:
        assert got.after < current
        for at in (last.scale_down_at, last.scale_up_at, last.failed_down_at):
            assert at is None or (NOW - at).total_seconds() >= 600
        names = {"cpu_memory": ("cpu", "memory"), "cpu": ("cpu",), "queue": ("value",)}[
            policy.metric
        ]
        # missing data never scales down
        assert all(p.get(name) is not None for p in used for name in names)


def test_a_refused_change_starts_its_cooldown_too() -> None:
    """A change the engine refused (no capacity, a rollout in between) is not retried every
    period with a failed event and an alert each time: it waits for its direction's cooldown
    since the refused attempt, like a change that was carried out."""
    ago = lambda s: NOW - timedelta(seconds=s)  # noqa: E731
    cases: list[tuple[Policy, list[Datapoint], int, LastEvents, str, int, str]] = [
        # policy, window, current, last, action, after, words in the reason
        (STEP, points(90, 90), 3, LastEvents(failed_up_at=ago(100)), "none", 3, "refused"),
        (STEP, points(90, 90), 3, LastEvents(failed_up_at=ago(300)), "scale_up", 4, "CPU"),
        (TARGET, points(90, 90), 4, LastEvents(failed_up_at=ago(299)), "none", 4, "refused"),
        (TARGET, points(90, 90), 4, LastEvents(failed_up_at=ago(300)), "scale_up", 8, "wanted"),
        (
            STEP,
            points(20, 25, memory=30),
            4,
            LastEvents(failed_down_at=ago(599)),
            "none",
            4,
            "scale-down cooldown",
        ),
        (
            STEP,
            points(20, 25, memory=30),
            4,
            LastEvents(failed_down_at=ago(600)),
            "scale_down",
            3,
            "",
        ),
        (TARGET, points(20, 20), 5, LastEvents(failed_down_at=ago(10)), "none", 5, "refused"),
        # a refused scale-up does not hold a scale-down (nothing changed), nor the reverse
        (STEP, points(20, 25, memory=30), 4, LastEvents(failed_up_at=ago(10)), "scale_down", 3, ""),
        (STEP, points(90, 90), 3, LastEvents(failed_down_at=ago(10)), "scale_up", 4, "CPU"),
        # bringing a service back inside [floor, max] waits too once it was refused
        (STEP, points(50, 50), 1, LastEvents(failed_up_at=ago(100)), "none", 1, "below the floor"),
        (STEP, points(50, 50), 1, LastEvents(failed_up_at=ago(300)), "scale_up", 2, "floor"),
        (STEP, points(50, 50), 12, LastEvents(failed_down_at=ago(60)), "none", 12, "refused"),
        (STEP, points(50, 50), 12, LastEvents(failed_down_at=ago(600)), "scale_down", 10, "max"),
        # ... while a successful change never holds the way back inside
        (STEP, points(50, 50), 1, LastEvents(scale_up_at=ago(1)), "scale_up", 2, "floor"),
    ]
    for policy, window, current, last, action, after, words in cases:
        got = decide(policy, window, current, last, False, NOW)
        assert (got.action, got.after) == (action, after), (words, last, got)
        assert words in got.reason, (words, got.reason)


def test_thresholds_are_worded_as_the_decisions_word_them() -> None:
    """Thresholds are fractions: of 100% for CPU and memory, of metric_target for a named
    metric (the dashboard shows them so)."""
    queue = replace(STEP, metric="queue_depth", metric_target=50.0, scale_down_threshold=0.3)
    cases = [
        (STEP, "up above 80%, down below 40%"),
        (replace(STEP, scale_up_threshold=0.755), "up above 76%, down below 40%"),
        (queue, "up above 40, down below 15"),
        (
            replace(queue, metric_per_replica=True, metric_target=0.5),
            "up above 0.4, down below 0.15",
        ),
        (replace(TARGET, metric="cpu_memory"), "target CPU 50%, memory 75%"),
        (replace(queue, mode="target"), "target queue_depth 50"),
    ]
    for policy, words in cases:
        assert thresholds(policy) == words
