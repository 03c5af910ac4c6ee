"""A service's `scaling` key in pilothouse.yaml: autoscaling's rules with the file's positions,
the plan (create, field-level update, delete only with --prune), the replica count left to an
enabled policy, and export back to no change (pure, no store)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from pilothouse.apply.load import DocumentInvalid, load
from pilothouse.apply.plan import ABSENT, State, make_plan
from pilothouse.apply.state import desired_state, export_document
from pilothouse.autoscaling.schemas import DEFAULTS

DOC = """\
environments:
  prod:
    services:
      web:
        target_replicas: 2
"""


def doc(scaling: str | None = None, replicas: int = 2) -> str:
    text = DOC.replace("target_replicas: 2", f"target_replicas: {replicas}")
    return text if scaling is None else text + f"        scaling: {scaling}\n"


def desired(text: str) -> State:
    document, marks = load(text)
    state, problems = desired_state(document, marks, {})
    assert problems == []
    return state


def live(text: str, **policy: Any) -> State:
    """The live state a file leads to, with the policy's fields changed (or it removed)."""
    state = copy.deepcopy(desired(text))
    if policy.pop("no_policy", False):
        state["scaling_policy"].clear()
    else:
        state["scaling_policy"].setdefault("prod/web", dict(DEFAULTS)).update(policy)
    return state


def test_a_policy_is_the_defaults_with_the_files_fields() -> None:
    floor = "[{cron: '0 9 * * *', minutes: 60, min_instances: 3}]"
    state = desired(doc(f"{{max_instances: 6, schedules: {floor}}}"))
    policy = state["scaling_policy"]["prod/web"]
    assert policy == {
        **DEFAULTS,
        "max_instances": 6,
        "schedules": [{"cron": "0 9 * * *", "minutes": 60, "min_instances": 3}],
    }
    assert desired(doc())["scaling_policy"] == {}


@pytest.mark.parametrize(
    ("scaling", "path", "rule", "at"),
    [
        # autoscaling's cross-field rules (merged/check_policy), at the field's position
        ("{min_instances: 0}", "min_instances", "scaling to zero needs a router", "0}"),
        ("{min_instances: 5, max_instances: 3}", "min_instances", "<= max_instances (3)", "5,"),
        ("{scale_up_threshold: 0.3}", "scale_up_threshold", "greater than scale_down", "0.3"),
        # a field the file does not give: at the policy
        ("{metric: queue_depth}", "metric_target", "is required", "{metric"),
        ("{metric_stat: median}", "metric_stat", "must be one of", "median"),
        (
            "{schedules: [{cron: every day, minutes: 5, min_instances: 2}]}",
            "schedules.0.cron",
            "five-field cron",
            "every day",
        ),
        # autoscaling's field ranges (PolicySet), found when the file is loaded
        ("{max_instances: 101}", "max_instances", "less than or equal to 100", "101"),
        ("{colour: blue}", "colour", "unknown key", "colour"),
    ],
)
def test_policy_problems_name_the_field_with_its_position(
    scaling: str, path: str, rule: str, at: str
) -> None:
    text = doc(scaling)
    try:
        document, marks = load(text)
    except DocumentInvalid as exc:
        found = exc.problems
    else:
        found = desired_state(document, marks, {})[1]
    assert len(found) == 1, found
    problem = found[0]
    assert problem.path == f"environments.prod.services.web.scaling.{path}"
    assert rule in problem.rule
    assert problem.line == 6
    assert text.splitlines()[5][problem.column - 1 :].startswith(at)


def changes(text: str, live_state: State, prune: bool = False) -> list[tuple[Any, ...]]:
    plan = make_plan(desired(text), live_state, prune=prune)
    return [
        (c.action, c.kind, c.key, [(f.path, f.before, f.after) for f in c.fields])
        for c in plan.changes
    ]


@pytest.mark.parametrize(
    ("text", "live_state", "prune", "expected"),
    [
        # a new policy: every field listed
        (
            doc("{max_instances: 4}"),
            live(doc(), no_policy=True),
            False,
            [
                (
                    "create",
                    "scaling_policy",
                    "prod/web",
                    [(k, ABSENT, 4 if k == "max_instances" else v) for k, v in DEFAULTS.items()],
                )
            ],
        ),
        # field level, nested tags down to their leaves
        (
            doc("{max_instances: 6, metric_tags: {route: /api}}"),
            live(doc("{}")),
            False,
            [
                (
                    "update",
                    "scaling_policy",
                    "prod/web",
                    [("max_instances", 10, 6), ("metric_tags.route", ABSENT, "/api")],
                )
            ],
        ),
        # a key left out is its default: a live metric target is cleared
        (
            doc("{metric: cpu}"),
            live(doc("{metric: cpu}"), metric_target=5.0),
            False,
            [("update", "scaling_policy", "prod/web", [("metric_target", 5.0, None)])],
        ),
        # 70 and 70.0 are the same setting
        (doc("{target_cpu_percent: 70}"), live(doc("{}")), False, []),
        # a policy the file does not mention is kept, and deleted with --prune
        (doc(), live(doc()), False, []),
        (doc(), live(doc()), True, [("delete", "scaling_policy", "prod/web", [])]),
        # pruning a service takes its policy first
        (
            "environments:\n  prod: {}\n",
            live(doc("{}")),
            True,
            [
                ("delete", "scaling_policy", "prod/web", []),
                ("delete", "service", "prod/web", []),
            ],
        ),
    ],
)
def test_plan_of_a_policy(
    text: str, live_state: State, prune: bool, expected: list[tuple[Any, ...]]
) -> None:
    assert changes(text, live_state, prune) == expected


def test_an_unmentioned_policy_is_listed_as_unmanaged() -> None:
    plan = make_plan(desired(doc()), live(doc()))
    assert plan.empty and plan.unmanaged == (("scaling_policy", "prod/web"),)


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [
        # an enabled policy owns the replica count: the autoscaler's 5 is no drift
        ("{}", []),
        ("{enabled: true, max_instances: 8}", []),
        # a disabled one (or none) leaves it to the file
        (
            "{enabled: false, max_instances: 8}",
            [("update", "service", "prod/web", [("target_replicas", 5, 2)])],
        ),
        (None, [("update", "service", "prod/web", [("target_replicas", 5, 2)])]),
    ],
)
def test_an_enabled_policy_owns_the_replica_count(
    scaling: str | None, expected: list[tuple[Any, ...]]
) -> None:
    text = doc(scaling)
    live_state = copy.deepcopy(desired(doc(scaling, replicas=5)))
    live_state["service"]["prod/web"]["target_replicas"] = 5
    assert changes(text, live_state) == expected


@pytest.mark.parametrize(
    ("policy", "written"),
    [
        ({}, {}),
        (
            {
                "mode": "target",
                "min_instances": 2,
                "metric": "http_requests_total",
                "metric_stat": "rate",
                "metric_target": 50.0,
                "metric_per_replica": True,
                "metric_tags": {"route": "/api"},
                "schedules": [{"cron": "0 9 * * 1-5", "minutes": 540, "min_instances": 4}],
            },
            None,
        ),
    ],
)
def test_export_writes_the_policy_back_to_no_change(
    policy: dict[str, Any], written: dict[str, Any] | None
) -> None:
    state = live(doc(), **policy)
    exported = export_document(state)
    scaling = exported["environments"]["prod"]["services"]["web"]["scaling"]
    assert scaling == (policy if written is None else written)  # defaults left out
    again = desired(yaml.safe_dump(exported, sort_keys=False))
    assert make_plan(again, state, prune=True).empty
