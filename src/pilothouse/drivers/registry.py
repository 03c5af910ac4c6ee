"""The driver registry: the one place that knows which drivers exist.

A driver is a class implementing `drivers.base.Driver`, registered here by name with a factory.
An environment's `driver` is checked against this registry when it is written (an unknown name
is a 422 naming the known ones), and a service's `driver_config` is validated by the driver's
`config_model`. Adding a driver: a new module in drivers/ and one `register(...)` line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from pilothouse.drivers.base import Driver, HookConfig
from pilothouse.drivers.command import CommandDriver
from pilothouse.drivers.container import ContainerDriver
from pilothouse.drivers.process import ProcessDriver, Router
from pilothouse.drivers.transport import TransportPool
from pilothouse.errors import ValidationFailed


@dataclass(frozen=True)
class DriverContext:
    """What a driver may be built with: the data directory and the shared router."""

    data_dir: Path
    router: Router | None = None
    container_engine: str = "podman"  # the container driver's engine CLI (podman or docker)
    container_runtime: str | None = "runc"  # OCI runtime in pilothouse's containers.conf
    transports: TransportPool | None = None  # how drivers reach other nodes (shared)


Factory = Callable[[DriverContext], Driver]


@dataclass(frozen=True)
class Registered:
    factory: Factory
    config_model: type[HookConfig]
    supervised: bool


_DRIVERS: dict[str, Registered] = {}


def register(name: str, factory: Factory, config_model: type[HookConfig], supervised: bool) -> None:
    _DRIVERS[name] = Registered(factory, config_model, supervised)


register(
    "process",
    lambda ctx: ProcessDriver(ctx.data_dir, ctx.router, transports=ctx.transports),
    ProcessDriver.config_model,
    True,
)
register("command", lambda ctx: CommandDriver(), CommandDriver.config_model, False)
register(
    "container",
    lambda ctx: ContainerDriver(
        ctx.data_dir,
        ctx.router,
        engine=ctx.container_engine,
        runtime=ctx.container_runtime,
        transports=ctx.transports,
    ),
    ContainerDriver.config_model,
    True,
)


class UnknownDriver(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown driver {name!r} (known: {', '.join(names())})")
        self.name = name


def names() -> list[str]:
    return sorted(_DRIVERS)


def supervised() -> list[str]:
    """Drivers whose replicas pilothouse supervises (adoption, restarts, sampling, routing)."""
    return sorted(name for name, entry in _DRIVERS.items() if entry.supervised)


def routes(name: str) -> bool:
    """Whether the driver serves a stable `router_port` (its config model has one)."""
    entry = _DRIVERS.get(name)
    return entry is not None and "router_port" in entry.config_model.model_fields


def check_name(name: str) -> str:
    """A validator: the name of a registered driver, else UnknownDriver (a ValueError)."""
    if name not in _DRIVERS:
        raise UnknownDriver(name)
    return name


def config_model(name: str) -> type[HookConfig]:
    return _DRIVERS[check_name(name)].config_model


def validate_config(name: str, config: dict[str, object]) -> BaseModel:
    """The driver_config parsed by the driver's model; raises pydantic's ValidationError."""
    return config_model(name).model_validate(config)


def check_config(driver: str, config: dict[str, object], *, field: str = "driver_config") -> None:
    """Validate a service's driver_config with the driver's model; ValidationFailed (422)
    names the first bad key, e.g. `driver_config.max_surge`."""
    try:
        validate_config(driver, config)
    except UnknownDriver as exc:
        raise ValidationFailed("driver", str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValidationFailed(f"{field}.{where}" if where else field, first["msg"]) from None


def create(name: str, ctx: DriverContext) -> Driver:
    return _DRIVERS[check_name(name)].factory(ctx)


def create_all(ctx: DriverContext) -> dict[str, Driver]:
    """One instance of every registered driver (a worker's set)."""
    return {name: entry.factory(ctx) for name, entry in _DRIVERS.items()}
