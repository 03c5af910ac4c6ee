"""Replica lifecycle rules (liveness, memory limit, give up, service outcome) as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.replicas.lifecycle import (
    CheckResult,
    give_up,
    given_up_reason,
    liveness_failure,
    memory_verdict,
    restarts_in_window,
    service_outcome,
)

NOW = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
OK = CheckResult(True, 200)
E503 = CheckResult(False, 503, "HTTP 503")
REFUSED = CheckResult(False, None, "connection refused")


@pytest.mark.parametrize(
    ("newest_first", "failures", "expected"),
    [
        ([], 3, None),
        ([E503, E503], 3, None),  # not enough checks since the start yet
        ([E503, E503, E503], 3, "liveness: 3 failed checks: HTTP 503"),
        ([E503, E503, OK], 3, None),  # a pass breaks the streak
        ([OK, E503, E503, E503], 3, None),  # recovered: the newest passed
        ([REFUSED, E503, E503, OK], 3, "liveness: 3 failed checks: connection refused"),
        ([E503], 1, "liveness: 1 failed checks: HTTP 503"),
        ([E503, E503, E503], 0, None),  # 0: liveness is off
        ([CheckResult(False, None, None)] * 3, 3, "liveness: 3 failed checks: no answer"),
    ],
)
def test_liveness_failure(
    newest_first: list[CheckResult], failures: int, expected: str | None
) -> None:
    assert liveness_failure(newest_first, failures) == expected


@pytest.mark.parametrize(
    ("memory", "limit", "since", "grace", "over_since", "reason"),
    [
        (None, 512, None, 10, None, None),  # no figure
        (400, 512, None, 10, None, None),
        (512, 512, None, 10, None, None),  # at the limit is not over it
        (600, 512, None, 10, NOW, None),  # the clock starts
        (600, 512, NOW - timedelta(seconds=5), 10, NOW - timedelta(seconds=5), None),
        (
            734,
            512,
            NOW - timedelta(seconds=10),
            10,
            NOW - timedelta(seconds=10),
            "memory: 734 MB over the 512 MB limit for 10 s",
        ),
        (600, 512, None, 0, NOW, "memory: 600 MB over the 512 MB limit for 0 s"),
        (400, 512, NOW - timedelta(seconds=30), 10, None, None),  # back under: clock cleared
        (600, None, None, 0, None, None),  # no limit
    ],
)
def test_memory_verdict(
    memory: float | None,
    limit: float | None,
    since: datetime | None,
    grace: float,
    over_since: datetime | None,
    reason: str | None,
) -> None:
    verdict = memory_verdict(memory, limit, since, NOW, grace)
    assert (verdict.over_since, verdict.reason) == (over_since, reason)


@pytest.mark.parametrize(
    ("in_window", "max_restarts", "expected"),
    [(0, 5, False), (4, 5, False), (5, 5, True), (9, 5, True), (100, 0, False)],
)
def test_give_up(in_window: int, max_restarts: int, expected: bool) -> None:
    assert give_up(in_window, max_restarts) is expected


def test_restarts_in_window_counts_only_recent_ones() -> None:
    times = [NOW - timedelta(seconds=s) for s in (1, 100, 599, 600, 601, 3600)]
    assert restarts_in_window(times, NOW, 600) == 4


@pytest.mark.parametrize(("live", "outcome"), [(0, "failed"), (1, "degraded"), (7, "degraded")])
def test_service_outcome(live: int, outcome: str) -> None:
    assert service_outcome(live) == outcome


def test_given_up_reason_names_count_window_and_cause() -> None:
    text = given_up_reason(3, 600, "liveness: 3 failed checks: HTTP 503")
    assert text == "gave up after 3 restarts in 600 s; last: liveness: 3 failed checks: HTTP 503"


@given(
    st.lists(st.booleans(), max_size=12),
    st.integers(min_value=1, max_value=6),
)
def test_liveness_fires_exactly_on_a_full_streak_of_failures(oks: list[bool], n: int) -> None:
    checks = [OK if ok else E503 for ok in oks]
    fired = liveness_failure(checks, n) is not None
    assert fired == (len(oks) >= n and not any(oks[:n]))


@given(st.floats(min_value=0, max_value=1e5), st.floats(min_value=1, max_value=1e5))
def test_never_a_memory_reason_at_or_under_the_limit(memory: float, limit: float) -> None:
    if memory <= limit:
        assert memory_verdict(memory, limit, NOW - timedelta(days=1), NOW, 0).reason is None
