"""The rolling-update plan (drivers/rolling.py): a table of rollouts and its guarantees as
hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.drivers.rolling import RollingPlan, Step, plan_rolling_update


def steps(*triples: tuple[int, int, int]) -> tuple[Step, ...]:
    return tuple(Step(*t) for t in triples)


CASES = [
    # (keep, old, target, max_surge, max_unavailable) -> steps, retire_last
    pytest.param((0, 3, 3, 1, 0), steps((0, 1, 1), (0, 1, 1), (0, 1, 1)), 0, id="one-by-one"),
    pytest.param((0, 3, 3, 2, 0), steps((0, 2, 2), (0, 1, 1)), 0, id="surge-2"),
    pytest.param((0, 2, 2, 0, 0), steps((0, 1, 1), (0, 1, 1)), 0, id="surge-0-counts-as-1"),
    pytest.param((0, 0, 3, 1, 0), steps((0, 1, 0), (0, 1, 0), (0, 1, 0)), 0, id="first-deploy"),
    pytest.param((2, 0, 4, 1, 0), steps((0, 1, 0), (0, 1, 0)), 0, id="scale-up"),
    pytest.param((2, 1, 2, 1, 0), (), 1, id="scale-down"),
    pytest.param((3, 0, 3, 1, 0), (), 0, id="nothing-to-do"),
    pytest.param((0, 5, 2, 1, 0), steps((0, 1, 1), (0, 1, 1)), 3, id="new-version-fewer"),
    pytest.param((0, 1, 3, 1, 0), steps((0, 1, 1), (0, 1, 0), (0, 1, 0)), 0, id="new-version-more"),
    # max_unavailable: old replicas go ahead of their replacements, never more than allowed
    pytest.param((0, 4, 4, 1, 1), steps((1, 2, 2), (0, 2, 1)), 0, id="unavailable-1"),
    pytest.param((0, 6, 6, 1, 2), steps((2, 3, 3), (0, 3, 1)), 0, id="unavailable-2"),
    pytest.param((0, 3, 3, 0, 3), steps((3, 3, 0)), 0, id="all-at-once"),
    pytest.param((0, 2, 2, 1, 5), steps((2, 2, 0)), 0, id="unavailable-above-target"),
    pytest.param((0, 1, 3, 1, 1), steps((0, 1, 1), (0, 1, 0), (0, 1, 0)), 0, id="short-of-target"),
]


@pytest.mark.parametrize(("counts", "expected", "retire_last"), CASES)
def test_plan(
    counts: tuple[int, int, int, int, int], expected: tuple[Step, ...], retire_last: int
) -> None:
    keep, old, target, surge, unavailable = counts
    plan = plan_rolling_update(
        keep=keep, old=old, target=target, max_surge=surge, max_unavailable=unavailable
    )
    assert plan == RollingPlan(expected, retire_last)


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        plan_rolling_update(keep=0, old=-1, target=1, max_surge=1, max_unavailable=0)


@given(
    target=st.integers(1, 40),
    keep=st.integers(0, 40),
    old=st.integers(0, 40),
    max_surge=st.integers(0, 10),
    max_unavailable=st.integers(0, 10),
)
def test_guarantees(target: int, keep: int, old: int, max_surge: int, max_unavailable: int) -> None:
    keep = min(keep, target)  # the driver keeps at most `target` live replicas of the version
    plan = plan_rolling_update(
        keep=keep, old=old, target=target, max_surge=max_surge, max_unavailable=max_unavailable
    )
    initial = keep + old
    floor = max(0, min(initial, target - max_unavailable))
    ceiling = max(initial, target) + max(max_surge, 1)
    assert sum(s.start for s in plan.steps) == target - keep
    assert sum(s.retire_first + s.retire_after for s in plan.steps) + plan.retire_last == old
    assert all(s.start >= 1 for s in plan.steps)
    if max_unavailable == 0:
        assert all(s.retire_first == 0 for s in plan.steps)
    serving = initial
    for step in plan.steps:
        serving -= step.retire_first
        assert serving >= floor, (plan, "too many down")
        assert serving + step.start <= ceiling, (plan, "too many at once")
        serving += step.start - step.retire_after
        assert serving >= floor
    assert serving - plan.retire_last == target
