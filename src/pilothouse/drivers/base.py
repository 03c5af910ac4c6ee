"""The one interface every driver implements, and the plans and events it speaks in.

Drivers never touch the database. The engine hands a driver a plan and an events object; the
driver reports what happens (log lines, replicas created, started, ready, stopped) through the
events object, which the engine persists.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from pilothouse.drivers.transport import NodeAccess


class HookConfig(BaseModel):
    """The part of a service's `driver_config` every driver shares: build and migration hooks."""

    model_config = ConfigDict(extra="allow")

    build_command: str | None = Field(default=None, description="Run before deploying.")
    build_timeout: float = Field(default=600, gt=0, le=86400, description="Seconds.")
    migration_command: str | None = Field(
        default=None, description="Run before the switch; its last output line is the version."
    )
    migration_timeout: float = Field(default=600, gt=0, le=86400, description="Seconds.")
    cwd: str | None = Field(default=None, description="Working directory of commands/replicas.")


class SupervisedConfig(HookConfig):
    """The lifecycle part of `driver_config` of drivers whose replicas pilothouse supervises
    (replicas/lifecycle.py decides with these; docs/releases.md "Replica lifecycle")."""

    liveness_failures: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Failed health checks in a row that restart a live replica (0: off).",
    )
    max_restarts: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="Restarts within restart_window after which a replica stays failed (0: never).",
    )
    restart_window: float = Field(
        default=600.0, gt=0, le=86400, description="Seconds over which restarts are counted."
    )
    memory_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Seconds a replica may stay over memory_mb before it is restarted.",
    )
    limits: Literal["auto", "sampling"] = Field(
        default="auto",
        description="auto: cgroups v2 where the host allows it, else sampling; sampling: always.",
    )


class RolloutFailed(Exception):
    """The rollout could not complete; `reason` goes into the deployment's error_message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ReplicaInfo:
    """A replica as the control plane knows it."""

    id: uuid.UUID
    version: str | None
    pid: int | None = None
    process_started_at: float | None = None
    port: int | None = None
    log_path: str | None = None
    status: str = "running"
    container_id: str | None = None  # container drivers
    node_id: uuid.UUID | None = None  # the node it runs on (None: this host)


#: What a deployment does (its event_type); drivers read it from `ServiceSpec.event`.
Event = Literal["deploy", "rollback", "restart", "config_update", "scale", "stop", "start"]


@dataclass(frozen=True)
class ServiceSpec:
    """What a driver needs to know about the service and the release."""

    service_id: uuid.UUID
    service_name: str
    environment_name: str
    command: str | None
    image: str | None
    version: str
    commit_sha: str | None
    target_replicas: int
    env: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    health_check: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # values to scrub from any output
    event: Event = "deploy"
    run_as: str | None = None  # the environment's config.run_as (drivers/sandbox.py)
    memory_mb: float | None = None  # the service's memory limit (enforced: drivers/cgroups.py)
    cpu_cores: float | None = None  # the service's CPU limit (cgroups only)
    gpu_units: int = 0  # GPUs (container driver: one CDI device each)
    storage_gb: int | None = None  # the service's storage (container driver: a volume)
    image_digest: str | None = None  # the artifact's digest: the image must have it
    release_id: uuid.UUID | None = None  # the deployment whose release this is (shim argv)


@dataclass(frozen=True)
class RolloutPlan:
    spec: ServiceSpec
    current: list[ReplicaInfo]
    deployment_id: uuid.UUID


@dataclass
class RolloutOutcome:
    instances: int
    replicas: list[uuid.UUID] = field(default_factory=list)
    # Old replicas still draining when traffic is already on the new set; awaited after success.
    cleanup: Awaitable[Any] | None = None


class Events(Protocol):
    """How a driver reports progress; the engine persists each call."""

    async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None: ...

    async def log_many(self, messages: list[str], *, source: str) -> None: ...

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Record a new replica (on `node_id` when `place` chose one, else this host)."""
        ...

    async def replica_changed(
        self, replica_id: uuid.UUID, to: str, *, reason: str | None = None, **fields: Any
    ) -> None: ...


@runtime_checkable
class Placing(Protocol):
    """Events that decide where a new replica runs (the engine's; drivers call `place` before
    `replica_created`, and before restarting a replica with the node it ran on as `prefer`)."""

    async def place(self, prefer: uuid.UUID | None = None) -> NodeAccess | None:
        """The node for one new replica (None: this host, no node recorded); raises
        RolloutFailed naming the shortfall when no node has room."""
        ...


@dataclass(frozen=True)
class Sample:
    """A replica's resource figures, as a driver reads them."""

    cpu_percent: float
    memory_mb: float


class Driver(Protocol):
    """Carry out rollouts and scaling, stop replicas; and, for drivers whose replicas
    pilothouse supervises (`supervised`), tell whether one is alive, restart it, sample it,
    and route traffic to the live ones. `config_model` validates a service's driver_config."""

    name: str
    config_model: ClassVar[type[HookConfig]]
    supervised: ClassVar[bool]

    async def rollout(self, plan: RolloutPlan, events: Events) -> RolloutOutcome: ...

    async def scale(self, plan: RolloutPlan, events: Events) -> RolloutOutcome: ...

    async def stop(self, replicas: list[ReplicaInfo], events: Events) -> None: ...

    async def status(self, replicas: list[ReplicaInfo]) -> dict[uuid.UUID, dict[str, Any]]: ...

    async def logs(self, replica: ReplicaInfo, tail: int = 100) -> list[str]: ...

    def alive(self, replica: ReplicaInfo) -> bool:
        """Whether the replica still runs (the very instance that was started)."""
        ...

    async def restart(self, spec: ServiceSpec, replica: ReplicaInfo, events: Events) -> ReplicaInfo:
        """Start a crashed replica again (same id, same version) and wait until it is ready;
        raise RolloutFailed (after stopping what it started) when it is not."""
        ...

    def sample(self, replica: ReplicaInfo) -> Sample | None:
        """CPU and memory of a live replica; None when it is not running."""
        ...

    async def terminate(self, replica: ReplicaInfo, grace: float) -> int | None:
        """Stop the replica now (no drain); returns its exit code when known."""
        ...

    async def route(
        self,
        service_id: uuid.UUID,
        config: dict[str, Any],
        backends: list[str],
        *,
        read_at: float | None = None,
    ) -> None:
        """Send the service's traffic to `backends` ("host:port"; no-op when the service has
        no router), which the caller read from the store at `read_at` (time.monotonic()),
        when it says."""
        ...

    async def unroute(self, service_id: uuid.UUID, config: dict[str, Any]) -> None:
        """Remove the service's router entry (the service was deleted)."""
        ...


@runtime_checkable
class LimitEnforcing(Protocol):
    """A supervised driver that enforces a replica's resource limits itself (cgroups) and can
    tell when the kernel killed one at its limit."""

    def exit_reason(self, replica: ReplicaInfo) -> str | None:
        """Why a replica that is gone died, when the driver knows (an OOM kill), else None."""
        ...
