"""The driver registry and the command driver's supervision answers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from pilothouse.deployments.supervisor import backoff
from pilothouse.drivers import registry
from pilothouse.drivers.base import ReplicaInfo, RolloutFailed
from pilothouse.drivers.command import CommandConfig, CommandDriver
from pilothouse.drivers.container import ContainerConfig
from pilothouse.drivers.process import ProcessConfig
from pilothouse.errors import ValidationFailed


def test_known_drivers_and_their_config_models() -> None:
    assert registry.names() == ["command", "container", "process"]
    assert registry.supervised() == ["container", "process"]
    assert registry.config_model("process") is ProcessConfig
    assert registry.config_model("container") is ContainerConfig
    assert registry.config_model("command") is CommandConfig


def test_an_unknown_driver_is_refused_never_a_fallback() -> None:
    with pytest.raises(registry.UnknownDriver, match=r"unknown driver 'kubernetes' \(known: "):
        registry.check_name("kubernetes")
    with pytest.raises(ValidationFailed) as caught:
        registry.check_config("podman", {})
    assert caught.value.field == "driver"


@pytest.mark.parametrize(
    ("driver", "config", "field"),
    [
        ("process", {"max_surge": -1}, "driver_config.max_surge"),
        ("process", {"max_unavailable": "many"}, "driver_config.max_unavailable"),
        ("process", {"router_port": 70000}, "driver_config.router_port"),
        ("process", {"verify": {"checks": 1, "bogus": 1}}, "driver_config.verify.bogus"),
        ("command", {"timeout": 0}, "driver_config.timeout"),
        ("command", {"build_timeout": "soon"}, "driver_config.build_timeout"),
    ],
)
def test_bad_driver_config_names_the_field(
    driver: str, config: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        registry.check_config(driver, config)
    assert caught.value.field == field


def test_good_driver_config_passes() -> None:
    registry.check_config("process", {"max_surge": 2, "max_unavailable": 1, "custom": "kept"})
    registry.check_config("command", {"deploy_command": "true", "timeout": 30})


@pytest.mark.parametrize(
    ("restarts", "seconds"),
    [(-1, 1.0), (0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (6, 60.0), (40, 60.0)],
)
def test_backoff_doubles_and_is_capped(restarts: int, seconds: float) -> None:
    assert backoff(restarts) == seconds


def test_command_driver_supervises_nothing() -> None:
    driver = CommandDriver()
    replica = ReplicaInfo(uuid.uuid4(), "v1", pid=1)
    assert not driver.alive(replica) and driver.sample(replica) is None

    async def scenario() -> None:
        assert await driver.terminate(replica, 1) is None
        await driver.route(uuid.uuid4(), {}, [1234])
        with pytest.raises(RolloutFailed):
            await driver.restart(None, replica, None)  # type: ignore[arg-type]

    asyncio.run(scenario())
