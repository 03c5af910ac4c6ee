"""What changed between two releases' config (deployments/configdiff.py): table tests of the
pure rules, and properties: a release never differs from itself, and a diff never holds more
than names, sources and versions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.deployments.configdiff import (
    MASK,
    SettingChange,
    VarChange,
    diff_pins,
    diff_settings,
    driver_snapshot,
)
from pilothouse.variables.service import Pin

VAR_A, VAR_B = uuid.UUID(int=1), uuid.UUID(int=2)


def env(key: str, version: int, var: uuid.UUID = VAR_A, secret: bool = False) -> Pin:
    return Pin(key, "environment", var, version, secret)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ([], [], []),
        ([env("X", 1)], [env("X", 1)], []),
        (
            [env("X", 1)],
            [env("X", 2)],
            [VarChange("X", "changed", "environment", "environment", "v1", "v2", False)],
        ),
        ([], [env("X", 1)], [VarChange("X", "added", None, "environment", None, "v1", False)]),
        (
            [env("S", 4, secret=True)],
            [],
            [VarChange("S", "removed", "environment", None, "v4", None, True)],
        ),
        # unset, then set again: a new row whose versions start at 1 again
        (
            [env("X", 1, VAR_A)],
            [env("X", 1, VAR_B)],
            [VarChange("X", "changed", "environment", "environment", "v1", "v1", False)],
        ),
        # a service variable now overrides the environment's
        (
            [env("X", 3)],
            [Pin("X", "service", VAR_B, 1)],
            [VarChange("X", "changed", "environment", "service", "v3", "v1", False)],
        ),
        (
            [Pin("FEATURE_BETA", "feature", enabled=False)],
            [Pin("FEATURE_BETA", "feature", enabled=True)],
            [VarChange("FEATURE_BETA", "changed", "feature", "feature", "off", "on", False)],
        ),
        ([Pin("LOG", "config")], [Pin("LOG", "config")], []),
        (
            [Pin("LOG", "config")],
            [],
            [VarChange("LOG", "removed", "config", None, "-", None, False)],
        ),
    ],
)
def test_diff_pins(before: list[Pin], after: list[Pin], expected: list[VarChange]) -> None:
    assert diff_pins(before, after) == expected


def test_driver_snapshot_keeps_names_and_masks_what_looks_secret() -> None:
    snapshot = driver_snapshot(
        "process",
        {
            "max_surge": 2,
            "env": {"API_TOKEN": "sntl-DRV-0001", "LOG": "debug"},
            "deploy_token": "sntl-DRV-0002",
            "upstream": "https://user:sntl-DRV-0003@example.com/x",
        },
        3,
    )
    assert snapshot == {
        "driver": "process",
        "target_replicas": 3,
        "config": {"deploy_token": MASK, "max_surge": 2, "upstream": MASK},
        "env": ["API_TOKEN", "LOG"],
    }
    assert "sntl-DRV" not in repr(snapshot)


DSN_PASSWORD = "sntl-DSN-hunter2"
DSN = f"postgres://app:{DSN_PASSWORD}@db/app"


@pytest.mark.parametrize(
    ("config", "kept"),
    [
        (
            {"migrate_command": f"DATABASE_URL={DSN} alembic upgrade head"},
            {"migrate_command": "DATABASE_URL=postgres://app:***@db/app alembic upgrade head"},
        ),
        (
            {"command": ["sh", "-c", f"psql 'host=db password={DSN_PASSWORD} user=app' -f x"]},
            {"command": ["sh", "-c", "psql 'host=db password=*** user=app' -f x"]},
        ),
        (
            {"hooks": {"pre": f"wait-for {DSN}", "db_password": DSN_PASSWORD, "n": 2}},
            {"hooks": {"pre": "wait-for postgres://app:***@db/app", "db_password": MASK, "n": 2}},
        ),
        ({"verify": "/ready"}, {"verify": "/ready"}),
    ],
)
def test_a_credential_inside_a_setting_is_masked_where_it_stands(
    config: dict[str, Any], kept: dict[str, Any]
) -> None:
    """A DSN inside a command is masked in the stored snapshot and in the diff; the rest of
    the setting stays readable."""
    snapshot = driver_snapshot("process", config, 1)
    assert snapshot["config"] == kept
    changes = diff_settings(driver_snapshot("process", {}, 1), snapshot)
    assert [c.change for c in changes] == ["added"] * len(config)
    assert DSN_PASSWORD not in repr(snapshot) and DSN_PASSWORD not in repr(changes)
    # a snapshot stored before this masking existed is masked when it is shown
    stored = {"driver": "process", "target_replicas": 1, "config": config}
    assert DSN_PASSWORD not in repr(diff_settings(None, stored))


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, None, []),
        ({"max_surge": 1}, {"max_surge": 1}, []),
        (
            {"max_surge": 1},
            {"max_surge": 2},
            [SettingChange("driver_config.max_surge", "changed", "1", "2")],
        ),
        (
            {},
            {"verify": "/ready"},
            [SettingChange("driver_config.verify", "added", None, "/ready")],
        ),
        ({"env": {"A": "1"}}, {"env": {"A": "2"}}, []),  # env values are never kept
        (
            {"env": {"A": "1"}},
            {"env": {"B": "1"}},
            [
                SettingChange("driver_config.env.A", "removed", "(set)", None),
                SettingChange("driver_config.env.B", "added", None, "(set)"),
            ],
        ),
        ({"api_token": "sntl-one-xx"}, {"api_token": "sntl-two-xx"}, []),  # masked both sides
    ],
)
def test_diff_settings(
    before: dict[str, Any] | None, after: dict[str, Any] | None, expected: list[SettingChange]
) -> None:
    a = driver_snapshot("process", before, 2) if before is not None else None
    b = driver_snapshot("process", after, 2) if after is not None else None
    assert diff_settings(a, b) == expected


def test_diff_settings_driver_and_replicas() -> None:
    assert diff_settings(driver_snapshot("process", {}, 2), driver_snapshot("command", {}, 3)) == [
        SettingChange("driver", "changed", "process", "command"),
        SettingChange("target_replicas", "changed", "2", "3"),
    ]


pins = st.lists(
    st.builds(
        Pin,
        key=st.sampled_from(["A", "B", "C", "FEATURE_X"]),
        source=st.sampled_from(["environment", "service", "feature", "config"]),
        var_id=st.sampled_from([None, VAR_A, VAR_B]),
        version=st.one_of(st.none(), st.integers(1, 5)),
        is_secret=st.booleans(),
        enabled=st.one_of(st.none(), st.booleans()),
    ),
    max_size=6,
    unique_by=lambda p: p.key,
)


@given(pins, pins)
def test_diff_properties(before: list[Pin], after: list[Pin]) -> None:
    assert diff_pins(before, before) == []
    forward, backward = diff_pins(before, after), diff_pins(after, before)
    assert [c.key for c in forward] == [c.key for c in backward]
    flip = {"added": "removed", "removed": "added", "changed": "changed"}
    assert [flip[c.change] for c in forward] == [c.change for c in backward]
    for change in forward:  # only labels: v<N>, on/off or -
        for label in (change.version_from, change.version_to):
            assert label is None or label in ("on", "off", "-") or label[1:].isdigit()
