"""Seed 000: deployments older than 90 days are archived (deployments/retention.py), as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.deployments.models import DEPLOYMENT_STATUSES
from pilothouse.deployments.retention import ARCHIVE_AFTER, Facts, archivable

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=91)


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {
        "created_at": OLD,
        "status": "success",
        "archived": False,
        "live": False,
    }
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (facts(), True),
        (facts(status="failed"), True),
        (facts(status="rolled_back"), True),
        (
            facts(status="rolled_back", live=True),
            True,
        ),  # a rolled-back deployment keeps nothing live
        (facts(status="failed", live=True), True),
        (facts(created_at=NOW - timedelta(days=89)), False),
        (facts(created_at=NOW - ARCHIVE_AFTER), False),  # exactly 90 days: not older than 90
        (facts(created_at=NOW - ARCHIVE_AFTER - timedelta(seconds=1)), True),
        (facts(status="pending"), False),
        (facts(status="building"), False),
        (facts(status="deploying"), False),
        (facts(live=True), False),  # the success that keeps the live release live
        (facts(archived=True), False),
    ],
)
def test_archivable(case: Facts, expected: bool) -> None:
    assert archivable(case, NOW) is expected


@given(
    age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
    status=st.sampled_from(DEPLOYMENT_STATUSES),
    live=st.booleans(),
)
def test_never_archives_recent_active_or_live(age: timedelta, status: str, live: bool) -> None:
    chosen = archivable(facts(created_at=NOW - age, status=status, live=live), NOW)
    if chosen:
        assert age > ARCHIVE_AFTER
        assert status in ("success", "failed", "rolled_back")
        assert not (live and status == "success")
