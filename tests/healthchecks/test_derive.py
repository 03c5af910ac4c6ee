"""Status derivation (seeds 000 and 001) and flap damping, as tables."""

from __future__ import annotations

import pytest

from pilothouse.healthchecks.derive import (
    Damper,
    Dependency,
    Observation,
    Thresholds,
    damp,
    dependency_status,
    derive,
)

DB_OK = Dependency("postgres", "database", 12)
REDIS_OK = Dependency("redis", "redis", 3)


def obs(**kw: object) -> Observation:
    base: dict[str, object] = {
        "responded": True,
        "response_ms": 45,
        "error_rate": 0.002,
        "dependencies": (DB_OK, REDIS_OK),
    }
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("observation", "expected", "reason"),
    [
        (obs(), "healthy", None),
        (obs(response_ms=199.9), "healthy", None),
        (obs(response_ms=200), "degraded", "response"),
        (obs(error_rate=0.0099), "healthy", None),
        (obs(error_rate=0.01), "degraded", "error rate"),
        (obs(error_rate=0.05), "degraded", "error rate"),
        (obs(error_rate=0.0501), "unhealthy", "error rate"),
        (obs(dependencies=(Dependency("postgres", "database", 100), REDIS_OK)), "healthy", None),
        (
            obs(dependencies=(Dependency("postgres", "database", 101), REDIS_OK)),
            "degraded",
            "slow: postgres",
        ),
        (obs(dependencies=(DB_OK, Dependency("redis", "redis", 50))), "healthy", None),
        (obs(dependencies=(DB_OK, Dependency("redis", "redis", 51))), "degraded", "slow: redis"),
        (
            obs(dependencies=(Dependency("postgres", "database", None), REDIS_OK)),
            "unhealthy",
            "postgres disconnected",
        ),
        (
            obs(dependencies=(DB_OK, Dependency("redis", "redis", None))),
            "unhealthy",
            "redis disconnected",
        ),
        # seed 001: one non-core dependency failing while the service responds -> degraded
        (
            obs(dependencies=(DB_OK, REDIS_OK, Dependency("payments", "http", None))),
            "degraded",
            "dependency down: payments",
        ),
        # several failing -> unhealthy
        (
            obs(dependencies=(Dependency("a", "http", None), Dependency("b", "tcp", None))),
            "unhealthy",
            "dependencies down",
        ),
        (obs(responded=False), "unhealthy", "not responding"),
        (obs(responded=False, http_statuses=(503,)), "unhealthy", "HTTP 503"),
        (obs(responded=False, http_statuses=(503, 502, 503)), "unhealthy", "HTTP 502, 503"),
        (obs(timed_out=True), "unhealthy", "timed out"),
        (Observation(responded=True, response_ms=10), "healthy", None),
    ],
)
def test_derive(observation: Observation, expected: str, reason: str | None) -> None:
    status, reasons = derive(observation)
    assert status == expected, reasons
    if reason:
        assert any(reason in r for r in reasons), reasons
        if reason.startswith("HTTP"):  # it answered: not "not responding"
            assert reasons == [reason]
    else:
        assert reasons == []


def test_thresholds_are_configurable() -> None:
    strict = Thresholds(response_ms=50)
    assert derive(obs(response_ms=60), strict)[0] == "degraded"
    assert derive(obs(response_ms=60))[0] == "healthy"


@pytest.mark.parametrize(
    ("latency", "kind", "expected"),
    [
        (None, "database", "disconnected"),
        (100, "database", "connected"),
        (100.5, "database", "slow"),
        (50, "redis", "connected"),
        (51, "redis", "slow"),
        (5000, "tcp", "connected"),
    ],
)
def test_dependency_status(latency: float | None, kind: str, expected: str) -> None:
    assert dependency_status(Dependency("d", kind, latency)) == expected


@pytest.mark.parametrize(
    ("sequence", "published"),
    [
        # three failures in a row before unhealthy (default N = 3)
        (["unhealthy", "unhealthy"], ["healthy", "healthy"]),
        (["unhealthy"] * 3, ["healthy", "healthy", "unhealthy"]),
        # a success in between restarts the count
        (
            ["unhealthy", "unhealthy", "healthy", "unhealthy", "unhealthy", "unhealthy"],
            ["healthy"] * 5 + ["unhealthy"],
        ),
        # two successes before healthy again (default M = 2)
        (["unhealthy"] * 3 + ["healthy"], ["healthy", "healthy", "unhealthy", "unhealthy"]),
        (
            ["unhealthy"] * 3 + ["healthy", "healthy"],
            ["healthy", "healthy", "unhealthy", "unhealthy", "healthy"],
        ),
        # degraded from healthy is published at once; back to healthy needs M
        (["degraded", "healthy", "healthy"], ["degraded", "degraded", "healthy"]),
        # flapping never reaches unhealthy
        (["unhealthy", "healthy"] * 5, ["healthy"] * 10),
    ],
)
def test_flap_damping(sequence: list[str], published: list[str]) -> None:
    state = Damper()
    seen = []
    for raw in sequence:
        state = damp(state, raw)  # type: ignore[arg-type]
        seen.append(state.status)
    assert seen == published
