"""The plan as a pure function of (desired, live): table tests and a convergence property."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.apply.plan import ABSENT, KINDS, Change, FieldChange, Secret, State, make_plan


def state(**kinds: dict[str, dict[str, Any]]) -> State:
    return {kind: dict(kinds.get(kind, {})) for kind in KINDS}


ENV = {"type": "staging", "limits": {"a": 1}}
SVC = {"image": "x", "resources": {"cpu_cores": 0.5, "memory_mb": 512}}


def summary(desired: State, live: State, prune: bool = False) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.key) for c in make_plan(desired, live, prune=prune).changes]


@pytest.mark.parametrize(
    ("desired", "live", "prune", "expected"),
    [
        (state(), state(), False, []),
        # creates in dependency order, whatever the order of the input
        (
            state(service={"prod/web": SVC}, environment={"prod": ENV}),
            state(),
            False,
            [("create", "environment", "prod"), ("create", "service", "prod/web")],
        ),
        (state(environment={"prod": ENV}), state(environment={"prod": ENV}), False, []),
        # without prune, live-only objects are left alone; with it, deleted in reverse order
        (state(), state(environment={"prod": ENV}, service={"prod/web": SVC}), False, []),
        (
            state(),
            state(environment={"prod": ENV}, service={"prod/web": SVC}),
            True,
            [("delete", "service", "prod/web"), ("delete", "environment", "prod")],
        ),
        (
            state(environment={"prod": {**ENV, "type": "production"}}),
            state(environment={"prod": ENV}),
            False,
            [("update", "environment", "prod")],
        ),
    ],
)
def test_plan_actions(
    desired: State, live: State, prune: bool, expected: list[tuple[str, str, str]]
) -> None:
    assert summary(desired, live, prune) == expected


@pytest.mark.parametrize(
    ("before", "after", "fields"),
    [
        # a nested mapping is diffed to its leaves
        (
            SVC,
            {**SVC, "resources": {"cpu_cores": 1, "memory_mb": 512}},
            [("resources.cpu_cores", 0.5, 1)],
        ),
        # 1 and 1.0 are the same setting, True and 1 are not
        ({"n": 1}, {"n": 1.0}, []),
        ({"n": 1}, {"n": True}, [("n", 1, True)]),
        # a key present on one side only
        ({"c": {"a": 1}}, {"c": {}}, [("c.a", 1, ABSENT)]),
        ({"c": {}}, {"c": {"a": 1}}, [("c.a", ABSENT, 1)]),
        # fields the file does not manage are not compared
        ({"x": 1, "other": 2}, {"x": 1}, []),
        # secrets compare by digest only, whatever their source
        ({"s": Secret("d1", "")}, {"s": Secret("d1", "variable A of prod")}, []),
        (
            {"s": Secret("d1")},
            {"s": Secret("d2", "variable A of prod")},
            [("s", Secret("d1"), Secret("d2"))],
        ),
    ],
)
def test_field_level_diff(
    before: dict[str, Any], after: dict[str, Any], fields: list[tuple[str, Any, Any]]
) -> None:
    plan = make_plan(state(environment={"e": after}), state(environment={"e": before}))
    expected = [FieldChange(*f) for f in fields]
    assert [f for c in plan.changes for f in c.fields] == expected


def test_secret_is_never_shown() -> None:
    assert repr(Secret("abc", "variable DB of prod")) == "<secret from variable DB of prod>"
    assert "abc" not in repr(Secret("abc"))


def test_top_fields_and_counts() -> None:
    change = Change(
        "update",
        "service",
        "p/w",
        (
            FieldChange("resources.cpu_cores", 1, 2),
            FieldChange("resources.memory_mb", 1, 2),
            FieldChange("image", "a", "b"),
        ),
    )
    assert change.top_fields() == ["resources", "image"]
    plan = make_plan(state(environment={"a": ENV}), state(environment={"b": ENV}), prune=True)
    assert plan.counts() == {"create": 1, "update": 0, "delete": 1}


values = st.one_of(st.integers(0, 3), st.booleans(), st.sampled_from(["a", "b"]), st.none())
objects = st.dictionaries(
    st.sampled_from(["f", "g"]),
    st.one_of(values, st.dictionaries(st.sampled_from(["x", "y"]), values)),
    max_size=2,
)
states = st.fixed_dictionaries(
    {
        kind: st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), objects, max_size=3)
        for kind in KINDS
    }
)


def carry_out(desired: State, live: State, prune: bool) -> State:
    """What applying the plan does to the live state (the executor's contract)."""
    out = {kind: {k: dict(v) for k, v in live[kind].items()} for kind in KINDS}
    for change in make_plan(desired, live, prune=prune).changes:
        if change.action == "delete":
            del out[change.kind][change.key]
        else:
            merged = out[change.kind].get(change.key, {})
            merged.update(desired[change.kind][change.key])
            out[change.kind][change.key] = merged
    return out


@settings(max_examples=40, deadline=None)
@given(states, states, st.booleans())
def test_applying_the_plan_converges(desired: State, live: State, prune: bool) -> None:
    after = carry_out(desired, live, prune)
    assert make_plan(desired, after, prune=prune).empty
    assert make_plan(desired, desired).empty
