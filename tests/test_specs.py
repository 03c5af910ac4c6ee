"""Typed specs are validated when written: a bad value is a 422 naming the field, never a
failure when a deployment or a probe runs later. What was given is what is stored."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api


def _fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [d["field"] for d in response.json()["detail"]]


def test_unknown_driver_is_a_422_naming_the_known_ones(api: Api) -> None:
    bad = api.post("/environments", {"name": "k8s", "driver": "kubernetes"})
    assert _fields(bad) == ["driver"]
    assert "unknown driver 'kubernetes'" in bad.json()["message"]
    assert "command, container, process" in bad.json()["message"]
    api.ok(api.post("/environments", {"name": "dev", "driver": "command"}), 201)
    assert _fields(api.patch("/environments/dev", {"driver": "ssh"})) == ["driver"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"dependency_interval": 0}, "config.dependency_interval"),
        ({"dependency_interval": "often"}, "config.dependency_interval"),
        ({"redis_url": 6379}, "config.redis_url"),
    ],
)
def test_bad_environment_config_names_the_field(
    api: Api, config: dict[str, Any], field: str
) -> None:
    assert _fields(api.post("/environments", {"name": "dev", "config": config})) == [field]


def test_environment_config_is_stored_as_given(api: Api) -> None:
    config = {"redis_url": "redis://127.0.0.1:6379/0", "team": "payments"}
    env = api.ok(api.post("/environments", {"name": "dev", "config": config}), 201)
    assert env["config"] == config


@pytest.mark.parametrize(
    ("health_check", "field"),
    [
        ({"timeout": 0}, "health_check.timeout"),
        ({"type": "udp"}, "health_check.type"),
        ({"request_timeout": "slow"}, "health_check.request_timeout"),
        ({"replica_interval": -1}, "health_check.replica_interval"),
        ({"sla_target": 101}, "health_check.sla_target"),
        (
            {"thresholds": {"failures_to_unhealthy": 0}},
            "health_check.thresholds.failures_to_unhealthy",
        ),
        ({"thresholds": {"typo": 1}}, "health_check.thresholds.typo"),
        ({"pth": "/health"}, "health_check.pth"),
    ],
)
def test_bad_health_check_names_the_field(
    api: Api, world: dict[str, Any], health_check: dict[str, Any], field: str
) -> None:
    body = {"environment": "prod", "name": "svc", "health_check": health_check}
    assert _fields(api.post("/services", body)) == [field]
    assert _fields(api.patch("/services/web", {"health_check": health_check})) == [field]


def test_health_check_is_stored_as_given(api: Api, world: dict[str, Any]) -> None:
    given = {"path": "/ready", "timeout": 10, "thresholds": {"successes_to_healthy": 3}}
    svc = api.ok(api.patch("/services/web", {"health_check": given}))
    assert svc["health_check"] == given
    fresh = api.ok(api.post("/services", {"environment": "prod", "name": "plain"}), 201)
    assert fresh["health_check"] == {}


@pytest.mark.parametrize(
    ("driver_config", "field"),
    [
        ({"max_surge": -1}, "driver_config.max_surge"),
        ({"max_unavailable": "all"}, "driver_config.max_unavailable"),
        ({"grace_seconds": 1000}, "driver_config.grace_seconds"),
        ({"verify": {"checks": 3, "required": 0}}, "driver_config.verify.required"),
    ],
)
def test_bad_driver_config_is_checked_by_the_driver_on_write(
    api: Api, world: dict[str, Any], driver_config: dict[str, Any], field: str
) -> None:
    body = {"environment": "prod", "name": "svc", "driver_config": driver_config}
    assert _fields(api.post("/services", body)) == [field]
    assert _fields(api.patch("/services/web", {"driver_config": driver_config})) == [field]


def test_switching_driver_checks_every_service_config(api: Api, world: dict[str, Any]) -> None:
    api.ok(api.patch("/services/web", {"driver_config": {"timeout": 0.5, "max_surge": 2}}))
    # `timeout` means nothing to the process driver, but the command driver requires > 0.
    api.ok(api.patch("/services/web", {"driver_config": {"timeout": 0}}))
    bad = api.patch("/environments/prod", {"driver": "command"})
    assert _fields(bad) == ["web.driver_config.timeout"]
    api.ok(api.patch("/services/web", {"driver_config": {"timeout": 30}}))
    api.ok(api.patch("/environments/prod", {"driver": "command"}))
