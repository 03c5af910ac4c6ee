"""Which release a manual rollback returns to (issue 12.1), as a table over every order of
success, failure, automatic rollback and manual rollback."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.deployments.rollback import Step, live_release, rollback_target, went_live


def ok(version: str, event: str = "deploy") -> Step:
    return Step(version, event, went_live=True)


def fail(version: str, event: str = "deploy") -> Step:
    return Step(version, event, went_live=False)


def auto(version: str) -> Step:
    """The automatic rollback that follows a failed deployment, back to the live release."""
    return Step(version, "rollback", went_live=True)


def back(version: str) -> Step:
    """A manual rollback (or `rollback --to VERSION`) that succeeded."""
    return Step(version, "rollback", went_live=True)


@pytest.mark.parametrize(
    ("history", "live", "target"),
    [
        pytest.param([], None, None, id="nothing deployed"),
        pytest.param([ok("v1")], "v1", None, id="first release: nothing earlier"),
        pytest.param([fail("v1")], None, None, id="first deployment failed"),
        pytest.param([fail("v1"), ok("v1")], "v1", None, id="failed then succeeded"),
        pytest.param([fail("v1"), ok("v2")], "v2", None, id="earlier one never went live"),
        pytest.param([ok("v1"), ok("v2")], "v2", "v1", id="success, success"),
        pytest.param([ok("v1"), ok("v2"), ok("v3")], "v3", "v2", id="three successes"),
        pytest.param(
            [ok("v1"), ok("v2"), fail("v3"), auto("v2")],
            "v2",
            "v1",
            id="issue 12.1: v3 failed and was rolled back automatically",
        ),
        pytest.param([ok("v1"), fail("v2"), auto("v1")], "v1", None, id="only v1 ever went live"),
        pytest.param(
            [ok("v1"), ok("v2"), fail("v3"), fail("v2", "rollback")],
            "v2",
            "v1",
            id="the automatic rollback failed too",
        ),
        pytest.param(
            [ok("v1"), fail("v2"), auto("v1"), ok("v3")],
            "v3",
            "v1",
            id="a failed release between two good ones",
        ),
        pytest.param([ok("v1"), ok("v2"), back("v1")], "v1", None, id="manual rollback"),
        pytest.param(
            [ok("v1"), ok("v2"), ok("v3"), back("v2")],
            "v2",
            "v1",
            id="a release rolled back by hand is not a target",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), ok("v3"), back("v2"), back("v1")],
            "v1",
            None,
            id="two manual rollbacks in a row go further back",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), ok("v3"), back("v1")],
            "v1",
            None,
            id="rollback --to skips over what it rolls back",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), back("v1"), ok("v2")],
            "v2",
            "v1",
            id="rolled back, then deployed again",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), back("v1"), ok("v3")],
            "v3",
            "v1",
            id="new release after a manual rollback",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), fail("v1", "rollback")],
            "v2",
            "v1",
            id="a manual rollback that failed changed nothing",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), ok("v2", "scale"), ok("v2", "restart")],
            "v2",
            "v1",
            id="scale and restart keep the release",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), ok("v2", "scale"), back("v1"), ok("v3")],
            "v3",
            "v1",
            id="a scaled release rolled back is still rolled back",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), ok("v1")], "v1", "v2", id="an older release deployed forward"
        ),
        pytest.param(
            [ok("v2"), ok("v1"), ok("v2"), back("v1")],
            "v1",
            None,
            id="a release rolled back is off the stack wherever it stood",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), back("v1"), back("v2")],
            "v2",
            None,
            id="rollback --to a release that was rolled back earlier",
        ),
        pytest.param(
            [ok("v1"), ok("v2"), ok("v3"), fail("v4"), auto("v3"), back("v2"), ok("v5")],
            "v5",
            "v2",
            id="everything at once",
        ),
    ],
)
def test_rollback_target(history: list[Step], live: str | None, target: str | None) -> None:
    assert live_release(history) == live
    assert rollback_target(history, live) == target


def test_the_live_release_is_excluded_even_when_the_history_disagrees() -> None:
    assert rollback_target([ok("v1"), ok("v2")], "v1") is None
    assert rollback_target([ok("v1"), ok("v2"), ok("v3")], "v2") == "v1"
    assert rollback_target([ok("v1"), ok("v2")], "v9") == "v2"


def test_went_live() -> None:
    history = [ok("v1"), fail("v2"), auto("v1"), ok("v3"), back("v1")]
    assert [v for v in ("v1", "v2", "v3") if went_live(history, v)] == ["v1", "v3"]


steps = st.builds(
    Step,
    st.sampled_from(["v1", "v2", "v3", "v4"]),
    st.sampled_from(["deploy", "rollback", "scale", "restart"]),
    went_live=st.booleans(),
)


@given(st.lists(steps, max_size=12))
def test_a_target_went_live_and_is_not_the_live_release(history: list[Step]) -> None:
    live = live_release(history)
    target = rollback_target(history, live)
    if target is not None:
        assert target != live
        assert went_live(history, target), "a release that never went live is never a target"


@given(st.lists(steps, max_size=12))
def test_rolling_back_twice_never_bounces(history: list[Step]) -> None:
    """After a rollback from A to B, the next rollback never returns to A."""
    live = live_release(history)
    target = rollback_target(history, live)
    if target is None:
        return
    after = [*history, back(target)]
    assert live_release(after) == target
    assert rollback_target(after, target) != live
