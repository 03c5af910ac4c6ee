"""The certificate and domain rules, as tables: status, alert levels, health effect, renewal
window and backoff; domain names, records, the dns_status machine and its retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.certificates import domains, rules
from pilothouse.errors import InvalidTransition
from pilothouse.healthchecks.derive import Observation, certificate_warning, derive

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEVELS = [30, 14, 7, 3, 1]


@pytest.mark.parametrize(
    ("left", "days"),
    [
        (timedelta(days=6, hours=23), 6),
        (timedelta(days=7), 7),
        (timedelta(hours=1), 0),
        (timedelta(seconds=-1), -1),
    ],
)
def test_days_left_rounds_down(left: timedelta, days: int) -> None:
    assert rules.days_left(NOW + left, NOW) == days


@pytest.mark.parametrize(
    ("days", "level"),
    [(45, None), (30, 30), (29, 30), (14, 14), (8, 14), (6, 7), (3, 3), (2, 3), (0, 1), (-1, 0)],
)
def test_due_level_is_the_most_urgent_reached(days: int, level: int | None) -> None:
    assert rules.due_level(days, LEVELS) == level


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=-5, max_value=400), st.lists(st.integers(1, 365), min_size=1))
def test_due_level_properties(days: int, levels: list[int]) -> None:
    level = rules.due_level(days, rules.normalize_levels(levels))
    if level is None:
        assert days > max(levels)
    elif level == 0:
        assert days < 0
    else:
        assert days <= level and all(not (days <= other < level) for other in levels)


def test_levels_are_checked_and_sorted() -> None:
    assert rules.normalize_levels([7, 30, 7, 1]) == [30, 7, 1]
    with pytest.raises(ValueError, match="between 1 and 365"):
        rules.normalize_levels([0])


@pytest.mark.parametrize(
    ("ok", "chain", "expires", "status"),
    [
        (True, True, NOW + timedelta(days=3), "active"),
        (True, False, NOW + timedelta(days=3), "failed"),  # untrusted chain
        (True, True, NOW - timedelta(days=1), "expired"),
        (True, False, NOW - timedelta(days=1), "expired"),  # expired beats untrusted
        (False, None, None, "failed"),
    ],
)
def test_status_follows_the_seed(
    ok: bool, chain: bool | None, expires: datetime | None, status: str
) -> None:
    assert (
        rules.status_of(handshake_ok=ok, chain_valid=chain, expires_at=expires, now=NOW) == status
    )


def test_certificate_transitions() -> None:
    rules.transition("pending", "active")
    rules.transition("active", "active")
    with pytest.raises(InvalidTransition):
        rules.transition("active", "bogus")


@pytest.mark.parametrize(
    ("ok", "detail", "warning"),
    [
        (True, "handshake ok; certificate expires in 40 days", None),
        (True, "handshake ok; certificate expires in 14 days", "certificate expires in 14 days"),
        (True, "handshake ok; certificate expires in -2 days", "certificate expired"),
        (
            False,
            "certificate not trusted: expired",
            "certificate: certificate not trusted: expired",
        ),
        (True, "handshake ok", None),
    ],
)
def test_certificate_warning(ok: bool, detail: str, warning: str | None) -> None:
    assert certificate_warning(ok, detail, 14) == warning


def test_an_expiring_certificate_is_degraded_never_unhealthy() -> None:
    obs = Observation(responded=True, response_ms=5, certificate="certificate expires in 6 days")
    assert derive(obs) == ("degraded", ["certificate expires in 6 days"])
    down = Observation(responded=False, certificate="certificate expired")
    assert derive(down)[0] == "unhealthy"  # down for its own reason, not the certificate


@pytest.mark.parametrize(
    ("expires", "before", "next_attempt", "due"),
    [
        (NOW + timedelta(days=31), 30, None, False),
        (NOW + timedelta(days=29), 30, None, True),
        (NOW + timedelta(days=29), 30, NOW + timedelta(minutes=5), False),  # backing off
        (None, 30, None, True),  # never issued
    ],
)
def test_renewal_window(
    expires: datetime | None, before: int, next_attempt: datetime | None, due: bool
) -> None:
    assert (
        rules.renewal_due(
            expires_at=expires, renew_before_days=before, next_attempt=next_attempt, now=NOW
        )
        == due
    )


def test_backoff_doubles_up_to_a_cap() -> None:
    waits = [rules.backoff(n).total_seconds() for n in range(1, 12)]
    assert waits[:3] == [60, 120, 240] and waits[-1] == 6 * 3600


# -- domains ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("API.Example.com.", "api.example.com"), ("a-b.example.org", "a-b.example.org")],
)
def test_normalize(name: str, expected: str) -> None:
    assert domains.normalize(name) == expected


@pytest.mark.parametrize("bad", ["localhost", "-a.example.com", "a..b.com", "1.2.3.4", "a b.com"])
def test_normalize_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        domains.normalize(bad)


@pytest.mark.parametrize(
    ("name", "root", "parts"),
    [
        ("api.example.com", None, ("api", "example.com")),
        ("example.com", None, ("", "example.com")),
        ("a.b.example.co.uk", "example.co.uk", ("a.b", "example.co.uk")),
    ],
)
def test_split(name: str, root: str | None, parts: tuple[str, str]) -> None:
    assert domains.split(name, root) == parts


def test_records_to_create() -> None:
    cname, txt = domains.records("api.example.com", "CNAME", "edge.pilot.example", "t0k")
    assert (cname.type, cname.name, cname.value) == (
        "CNAME",
        "api.example.com",
        "edge.pilot.example",
    )
    assert (txt.type, txt.name) == ("TXT", "_pilothouse.api.example.com")
    assert txt.value == "pilothouse-verification=t0k"


@pytest.mark.parametrize(
    ("kind", "target", "found", "points"),
    [
        ("CNAME", "edge.example", domains.Lookup(cname="EDGE.example."), True),
        ("CNAME", "edge.example", domains.Lookup(cname="other.example."), False),
        # flattened at the apex: same addresses as the target
        (
            "CNAME",
            "edge.example",
            domains.Lookup(
                addresses=frozenset({"198.18.0.2"}), target_addresses=frozenset({"198.18.0.2"})
            ),
            True,
        ),
        ("A", "198.18.0.2", domains.Lookup(addresses=frozenset({"198.18.0.2"})), True),
        ("A", "198.18.0.2", domains.Lookup(addresses=frozenset({"198.18.0.9"})), False),
        ("CNAME", "edge.example", domains.Lookup(), False),
    ],
)
def test_points_to_us(kind: str, target: str, found: domains.Lookup, points: bool) -> None:
    assert domains.points_to_us(kind, target, found) is points


@pytest.mark.parametrize(
    ("current", "found", "attempts", "after"),
    [
        ("pending", "pending", 1, "pending"),
        ("pending", "configured", 1, "configured"),
        ("configured", "verified", 2, "verified"),
        ("pending", "pending", 5, "failed"),  # attempts exhausted
        ("verified", "verified", 99, "verified"),  # re-checks never exhaust
        ("verified", "configured", 1, "failed"),  # stopped pointing to us: flagged
        ("failed", "verified", 1, "failed"),  # only `verify` starts a failed one over
    ],
)
def test_next_status(current: str, found: str, attempts: int, after: str) -> None:
    assert domains.next_status(current, found, attempts, max_attempts=5) == after
    assert after == current or after in domains.TRANSITIONS[current]


def test_observed_status() -> None:
    assert domains.observed_status(True, True) == "verified"
    assert domains.observed_status(True, False) == "configured"
    assert domains.observed_status(False, True) == "configured"
    assert domains.observed_status(False, False) == "pending"


def test_retry_delay_backs_off() -> None:
    assert [domains.retry_delay(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert domains.retry_delay(50).total_seconds() == 3600
