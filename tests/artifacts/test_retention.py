"""Seed 001: artifacts unused for 30 days that no rollback could return to are pruned
(artifacts/retention.py over deployments/rollback.py's history), as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.artifacts.retention import PRUNE_AFTER, Facts, prunable, rollback_keep
from pilothouse.deployments.rollback import Step

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=31)


def deploy(release: str, went_live: bool = True) -> Step:
    return Step(release, "deploy", went_live)


def rollback(release: str) -> Step:
    return Step(release, "rollback", True)


@pytest.mark.parametrize(
    ("history", "live", "keep"),
    [
        ([], None, set()),
        ([deploy("a")], "a", {"a"}),
        ([deploy("a"), deploy("b")], "b", {"a", "b"}),
        ([deploy("a"), deploy("b"), deploy("c")], "c", {"a", "b", "c"}),
        # c failed (never live): not a target
        ([deploy("a"), deploy("b"), deploy("c", went_live=False)], "b", {"a", "b"}),
        # rolled back from c to a: b and c are off the stack, not targets
        ([deploy("a"), deploy("b"), deploy("c"), rollback("a")], "a", {"a"}),
        # after the rollback, d went live: d and a stand
        ([deploy("a"), deploy("b"), rollback("a"), deploy("d")], "d", {"a", "d"}),
        # a restart of the live release keeps the stack
        ([deploy("a"), deploy("b"), Step("b", "restart", True)], "b", {"a", "b"}),
        # live given by the store (the deployed artifact), the history's own otherwise
        ([deploy("a"), deploy("b")], None, {"a", "b"}),
    ],
)
def test_rollback_keep(history: list[Step], live: str | None, keep: set[str]) -> None:
    assert rollback_keep(history, live) == keep


def art(ident: str, **kw: object) -> Facts:
    base: dict[str, object] = {"id": ident, "created_at": OLD, "deployed_at": None}
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("artifact", "keep", "pruned"),
    [
        (art("x"), set(), True),
        (art("x"), {"x"}, False),  # live or a rollback target
        (art("x", created_at=NOW - timedelta(days=29)), set(), False),
        (art("x", created_at=NOW - PRUNE_AFTER), set(), False),  # exactly 30 days
        (art("x", created_at=NOW - PRUNE_AFTER - timedelta(seconds=1)), set(), True),
        # registered long ago, but live until 5 days ago: last used 5 days ago
        (
            art("x", created_at=NOW - timedelta(days=90), deployed_at=NOW - timedelta(days=5)),
            set(),
            False,
        ),
        (
            art("x", created_at=NOW - timedelta(days=90), deployed_at=NOW - timedelta(days=40)),
            set(),
            True,
        ),
        (art("x", pruned=True), set(), False),
        (art("x", deleted=True), set(), False),
    ],
)
def test_prunable(artifact: Facts, keep: set[str], pruned: bool) -> None:
    assert prunable([artifact], frozenset(keep), NOW) == (["x"] if pruned else [])


RELEASES = st.sampled_from(["a", "b", "c", "d", "e"])
STEPS = st.builds(Step, RELEASES, st.sampled_from(["deploy", "rollback", "restart"]), st.booleans())


@given(
    history=st.lists(STEPS, max_size=12), ages=st.lists(st.integers(0, 90), min_size=5, max_size=5)
)
def test_never_prunes_what_a_rollback_could_return_to(history: list[Step], ages: list[int]) -> None:
    from pilothouse.deployments.rollback import live_release, rollback_candidates

    live = live_release(history)
    keep = rollback_keep(history, live)
    artifacts = [
        art(r, created_at=NOW - timedelta(days=d)) for r, d in zip("abcde", ages, strict=True)
    ]
    chosen = set(prunable(artifacts, keep, NOW))
    assert live is None or live not in chosen
    assert not chosen & set(rollback_candidates(history, live))
