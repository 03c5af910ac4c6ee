"""Built-in figures as tables: which counters an exposition offers, the 5-minute increase and
error rate (with counter resets), the health columns, and a service's merged figures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.healthchecks.derive import merge_figures
from pilothouse.metrics.builtin import (
    Counters,
    Scraped,
    apply_scrape,
    health_columns,
    keep_points,
    pick_counters,
    window,
)
from pilothouse.metrics.figures import ReplicaFigures

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def counters(text: str) -> Counters:
    return pick_counters(text_string_to_metric_families(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Counters()),
        (
            "# TYPE http_requests_total counter\nhttp_requests_total 10\n",
            Counters(requests=10),
        ),
        (  # errors from the 5xx status label when no error counter exists
            '# TYPE http_requests_total counter\nhttp_requests_total{code="200"} 90\n'
            'http_requests_total{code="500"} 7\nhttp_requests_total{code="503"} 3\n',
            Counters(requests=100, errors=10),
        ),
        (  # an explicit error counter wins over the labels
            '# TYPE http_requests_total counter\nhttp_requests_total{status="500"} 5\n'
            "# TYPE http_request_errors_total counter\nhttp_request_errors_total 2\n",
            Counters(requests=5, errors=2),
        ),
        (  # no status label: errors unknown
            "# TYPE requests_total counter\nrequests_total 4\n",
            Counters(requests=4),
        ),
        (
            "# TYPE http_active_connections gauge\nhttp_active_connections 3\n"
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1000\n"
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1048576\n",
            Counters(active=3, started=1000, resident_bytes=1048576),
        ),
        (  # untyped samples count too; NaN is ignored
            "http_requests_total 8\nhttp_active_connections NaN\n",
            Counters(requests=8),
        ),
    ],
)
def test_pick_counters(text: str, expected: Counters) -> None:
    assert counters(text) == expected


@pytest.mark.parametrize(
    ("points", "now", "requests", "errors", "rate"),
    [
        ([], 1000, None, None, None),
        ([(1000, 10, 1)], 1000, None, None, None),  # one point: no increase yet
        ([(700, 100, 0), (1000, 200, 10)], 1000, 100, 10, 0.1),
        ([(600, 50, 0), (700, 100, 0), (1000, 200, 10)], 1000, 100, 10, 0.1),  # 600 dropped
        ([(700, 100, 5), (1000, 100, 5)], 1000, 0, 0, None),  # no requests: rate unknown
        ([(700, 100, 10), (800, 20, 2), (1000, 60, 6)], 1000, 60, 6, 0.1),  # reset at 800
        ([(100, 0, 0), (1000, 100, 100)], 1000, 100, 100, 1.0),  # baseline before the window
    ],
)
def test_window(
    points: list[tuple[float, float, float]],
    now: float,
    requests: int | None,
    errors: int | None,
    rate: float | None,
) -> None:
    seen = window(points, now)
    assert (seen.requests, seen.errors) == (requests, errors)
    assert seen.error_rate == (pytest.approx(rate) if rate is not None else None)


def test_keep_points_keeps_one_baseline_before_the_window() -> None:
    points = [(100, 1, 0), (500, 2, 0), (650, 3, 0), (900, 4, 0)]
    assert keep_points(points, 1000) == [[650, 3, 0], [900, 4, 0]]


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), min_size=2, max_size=20))
def test_error_rate_is_a_share(increments: list[tuple[int, int]]) -> None:
    """Whatever the counters do (growing, resetting), the rate stays within [0, 1]."""
    points, t = [], 0.0
    requests = errors = 0
    for i, (r, e) in enumerate(increments):
        if i % 7 == 6:
            requests = errors = 0  # a restart resets the counters
        requests += r
        errors += min(e, r)
        t += 20
        points.append((t, requests, errors))
    rate = window(points, t).error_rate
    assert rate is None or 0.0 <= rate <= 1.0


def figures(**kw: object) -> ReplicaFigures:
    row = ReplicaFigures(replica_id=uuid.uuid4(), service_id=uuid.uuid4())
    row.points = []
    for key, value in {"up": True, "scraped_at": NOW, **kw}.items():
        setattr(row, key, value)
    return row


def test_apply_scrape_fills_the_figures_over_scrapes() -> None:
    row = figures()
    base = NOW.timestamp()
    start = Counters(requests=100, errors=0, active=2, started=base - 60, resident_bytes=50 << 20)
    apply_scrape(row, Scraped(row.replica_id, row.service_id, NOW, True, None, start))
    assert row.error_rate_5min is None  # one point: no window yet
    assert (row.total_requests, row.active_connections, row.uptime_seconds) == (100, 2, 60)
    assert row.memory_usage_mb == 50
    later = NOW + timedelta(seconds=30)
    apply_scrape(
        row,
        Scraped(
            row.replica_id, row.service_id, later, True, None, Counters(requests=200, errors=20)
        ),
    )
    assert (row.window_requests, row.window_errors) == (100, 20)
    assert row.error_rate_5min == pytest.approx(0.2)
    # A failed scrape keeps the last figures but marks the row down.
    apply_scrape(row, Scraped(row.replica_id, row.service_id, later, False, "HTTP 404", Counters()))
    assert not row.up and row.detail == "HTTP 404" and row.error_rate_5min == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("row", "kw", "expected"),
    [
        (None, {}, {}),
        (
            None,
            {"cpu_percent": 12.345, "memory_mb": 128.0, "memory_limit_mb": 512.0},
            {"cpu_usage_percent": 12.35, "memory_usage_mb": 128.0, "memory_usage_percent": 25.0},
        ),
        (
            figures(total_requests=10, error_rate_5min=0.5, active_connections=1, uptime_seconds=9),
            {},
            {
                "total_requests": 10,
                "error_rate_5min": 0.5,
                "active_connections": 1,
                "uptime_seconds": 9,
            },
        ),
        (  # the app's resident memory when the driver has no sample
            figures(memory_usage_mb=64.0),
            {"memory_limit_mb": 256.0},
            {"memory_usage_mb": 64.0, "memory_usage_percent": 25.0},
        ),
        (  # stale figures (older than two windows) are not reported
            figures(total_requests=10, scraped_at=NOW - timedelta(minutes=11)),
            {},
            {},
        ),
        (figures(total_requests=10, up=False), {}, {}),  # the last scrape failed
    ],
)
def test_health_columns(
    row: ReplicaFigures | None, kw: dict[str, float], expected: dict[str, object]
) -> None:
    args: dict[str, float | None] = {
        "cpu_percent": None,
        "memory_mb": None,
        "memory_limit_mb": None,
    }
    args.update(kw)
    assert health_columns(row, now=NOW, **args) == expected


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [
        ([], {}),
        ([{"cpu_usage_percent": 10.0}, {}], {"cpu_usage_percent": 10.0}),
        (
            [
                {
                    "total_requests": 10,
                    "uptime_seconds": 5,
                    "_window_requests": 100,
                    "_window_errors": 1,
                },
                {
                    "total_requests": 30,
                    "uptime_seconds": 50,
                    "_window_requests": 900,
                    "_window_errors": 99,
                },
            ],
            {"total_requests": 40, "uptime_seconds": 50, "error_rate_5min": 0.1},
        ),
        ([{"_window_requests": 0, "_window_errors": 0}], {}),  # no traffic: no rate
    ],
)
def test_merge_figures(replicas: list[dict[str, object]], expected: dict[str, object]) -> None:
    assert merge_figures(replicas) == expected
