"""Incident decisions (healthchecks/incidents.py): tables of the cases and hypothesis
properties of the invariants, like test_derive.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.healthchecks.incidents import NOTIFIES, incident_action, reminder_due

STATUSES = ["healthy", "degraded", "unhealthy"]


@pytest.mark.parametrize(
    ("status", "open_status", "action"),
    [
        ("healthy", None, "none"),
        ("degraded", None, "open"),
        ("unhealthy", None, "open"),
        ("degraded", "unhealthy", "ease"),
        ("unhealthy", "degraded", "escalate"),
        ("degraded", "degraded", "none"),
        ("unhealthy", "unhealthy", "none"),
        ("healthy", "degraded", "recover"),
        ("healthy", "unhealthy", "recover"),
    ],
)
def test_incident_action(status: str, open_status: str | None, action: str) -> None:
    assert incident_action(status, open_status) == action


@given(st.lists(st.sampled_from(STATUSES), max_size=60))
def test_one_alert_and_one_recovery_per_incident(published: list[str]) -> None:
    """Whatever the sequence of published statuses: an incident is open exactly while the
    service is not healthy; messages alternate open, recover, open... starting with open."""
    open_status: str | None = None
    messages: list[str] = []
    for status in published:
        action = incident_action(status, open_status)
        if action in NOTIFIES:
            messages.append(action)
        if action == "open" or action in ("escalate", "ease"):
            open_status = status
        elif action == "recover":
            open_status = None
        assert (open_status is None) == (status == "healthy")
        assert open_status in (None, status)
    assert messages == ["open", "recover"] * (len(messages) // 2) + ["open"] * (len(messages) % 2)


T0 = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("minutes", "sent", "due"),
    [
        (0.5, 0, None),  # not yet one interval
        (1, 0, 1),  # the first reminder
        (1.9, 1, None),  # already sent for this interval
        (2, 1, 2),
        (3, 0, 3),  # after a pause: one message, the missed ones counted, not sent
        (3, 3, None),
        (-1, 0, None),  # a clock that went back sends nothing
    ],
)
def test_reminder_due(minutes: float, sent: int, due: int | None) -> None:
    assert reminder_due(T0, T0 + minutes * MINUTE, MINUTE, sent) == due


def test_reminder_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        reminder_due(T0, T0, timedelta(0), 0)


@given(st.lists(st.integers(0, 10_000), max_size=40), st.integers(1, 120))
def test_reminders_never_burst_and_never_repeat(seconds: list[int], every_s: int) -> None:
    """Calls at increasing times: at most one message per call, never two for one interval,
    and the recorded count is the number of whole intervals elapsed at the last message."""
    every = timedelta(seconds=every_s)
    sent = 0
    for at in sorted(seconds):
        due = reminder_due(T0, T0 + timedelta(seconds=at), every, sent)
        if due is not None:
            assert due > sent and due == at // every_s
            sent = due
        else:
            assert at // every_s <= sent
