"""Which service changes define what runs on the host (admin only): a table of cases."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.services.hostfields import host_changes

CASES: list[tuple[dict[str, Any], dict[str, Any], list[str]]] = [
    ({}, {}, []),
    ({}, {"command": None}, []),
    ({}, {"command": "run"}, ["command"]),
    ({"command": "run"}, {"command": "run"}, []),
    ({"command": "run"}, {"command": None}, ["command"]),
    ({"command": "run"}, {"image": "x"}, []),
    ({}, {"driver_config": {"max_surge": 3, "verify": {"checks": 2}}}, []),
    ({}, {"driver_config": {"build_command": "make"}}, ["driver_config.build_command"]),
    ({}, {"driver_config": {"cwd": "/"}}, ["driver_config.cwd"]),
    ({}, {"driver_config": {"env": {"A": "1"}}}, ["driver_config.env"]),
    ({}, {"driver_config": {"anything_new": 1}}, ["driver_config.anything_new"]),
    (
        {"driver_config": {"deploy_command": "a", "timeout": 5}},
        {"driver_config": {"deploy_command": "a", "timeout": 9}},
        [],
    ),
    (
        {"driver_config": {"deploy_command": "a"}},
        {"driver_config": {}},
        ["driver_config.deploy_command"],
    ),
    (
        {"driver_config": {"deploy_command": "a"}},
        {"driver_config": None},
        ["driver_config.deploy_command"],
    ),
    (
        {"command": "a", "driver_config": {"stop_command": "x"}},
        {"command": "b", "driver_config": {"status_command": "y"}},
        ["command", "driver_config.status_command", "driver_config.stop_command"],
    ),
]


@pytest.mark.parametrize(("before", "after", "expected"), CASES)
def test_host_changes(before: dict[str, Any], after: dict[str, Any], expected: list[str]) -> None:
    assert host_changes(before, after) == expected
