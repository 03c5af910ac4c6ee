"""Alert rule decisions (pure): level of an evaluation, M of N firing, recovery."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.metrics.rules import firing, keep_history, level_of, next_status, threshold_status


@pytest.mark.parametrize(
    ("value", "comparator", "warning", "critical", "expected"),
    [
        (None, ">", 1.0, 2.0, "nodata"),
        (0.5, ">", 1.0, 2.0, "healthy"),
        (1.0, ">", 1.0, 2.0, "healthy"),  # at the level is not past it
        (1.5, ">", 1.0, 2.0, "warning"),
        (2.5, ">", 1.0, 2.0, "critical"),
        (2.5, ">", None, 2.0, "critical"),
        (1.5, ">", None, 2.0, "healthy"),
        (95.0, "<", 99.0, 90.0, "warning"),  # a floor: uptime below 99 warns
        (80.0, "<", 99.0, 90.0, "critical"),
        (99.5, "<", 99.0, 90.0, "healthy"),
    ],
)
def test_level_of(
    value: float | None,
    comparator: str,
    warning: float | None,
    critical: float | None,
    expected: str,
) -> None:
    assert level_of(value, comparator, warning, critical) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("levels", "m", "n", "expected"),
    [
        ([], 1, 1, "healthy"),
        (["warning"], 1, 1, "warning"),
        (["critical"], 1, 1, "critical"),
        (["warning", "healthy", "warning"], 2, 3, "warning"),
        (["warning", "healthy", "healthy"], 2, 3, "healthy"),
        (["critical", "warning", "healthy"], 2, 3, "warning"),  # both reach warning
        (["critical", "critical", "healthy"], 2, 3, "critical"),
        (["critical", "healthy", "healthy", "healthy"], 1, 3, "healthy"),  # outside the last N
        (["nodata", "nodata", "warning"], 2, 3, "healthy"),
    ],
)
def test_firing_m_of_n(levels: list[str], m: int, n: int, expected: str) -> None:
    assert firing(levels, m, n) == expected


@pytest.mark.parametrize(
    ("current", "levels", "m", "n", "recover", "expected"),
    [
        ("healthy", ["warning"], 2, 3, 1, "healthy"),  # one breach of 2-of-3: not yet
        ("healthy", ["warning", "warning"], 2, 3, 1, "warning"),
        ("warning", ["warning", "warning", "critical"], 1, 3, 1, "critical"),  # escalate
        ("warning", ["warning", "warning", "healthy"], 2, 3, 2, "warning"),  # one good: stays
        ("warning", ["warning", "healthy", "healthy"], 2, 3, 2, "healthy"),  # recovered
        ("critical", ["critical", "warning", "warning"], 1, 1, 2, "warning"),  # eases
        ("critical", ["critical", "healthy", "nodata"], 1, 1, 2, "critical"),  # no data: stays
        ("critical", ["healthy"], 1, 1, 3, "critical"),  # too few evaluations to recover
    ],
)
def test_next_status(
    current: str, levels: list[str], m: int, n: int, recover: int, expected: str
) -> None:
    got = next_status(current, levels, for_m=m, for_n=n, recover_n=recover)  # type: ignore[arg-type]
    assert got == expected


def test_next_status_refuses_bad_counts() -> None:
    with pytest.raises(ValueError, match="M <= N"):
        next_status("healthy", [], for_m=3, for_n=2, recover_n=1)
    with pytest.raises(ValueError, match="recovery"):
        next_status("healthy", [], for_m=1, for_n=1, recover_n=0)


def test_history_and_threshold_status() -> None:
    assert keep_history(["a", "b", "c"], "warning", 3) == ["b", "c", "warning"]
    assert threshold_status(None, 1, 2) == "healthy"
    assert threshold_status(3.0, 1, 2) == "critical"


@given(
    st.lists(st.sampled_from(["healthy", "warning", "critical", "nodata"]), max_size=12),
    st.integers(1, 5),
    st.integers(0, 4),
    st.integers(1, 4),
)
def test_all_healthy_tail_recovers(levels: list[str], m: int, extra: int, recover: int) -> None:
    """Whatever came before, `max(n, recover)` healthy evaluations in a row end healthy."""
    n = m + extra
    status = "healthy"
    history: list[str] = []
    for level in [*levels, *["healthy"] * max(n, recover)]:
        history = keep_history(history, level, max(n, recover))  # type: ignore[arg-type]
        status = next_status(status, history, for_m=m, for_n=n, recover_n=recover)  # type: ignore[arg-type]
    assert status == "healthy"
