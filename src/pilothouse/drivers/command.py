"""The `command` driver: user-given deploy, rollback, scale and status commands.

For PaaS CLIs, docker compose over ssh, or anything scriptable. Each command runs in a shell
with the release described in PILOTHOUSE_* variables, under a timeout; its output goes into the
deployment's logs and its exit code decides the outcome. `run_command` is also what the engine
uses for build and migration commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from pilothouse.drivers.base import (
    Events,
    HookConfig,
    ReplicaInfo,
    RolloutFailed,
    RolloutOutcome,
    RolloutPlan,
    Sample,
    ServiceSpec,
    child_environ,
)


class CommandConfig(HookConfig):
    """`driver_config` of a service run by the command driver."""

    deploy_command: str | None = Field(default=None, description="Deploys PILOTHOUSE_VERSION.")
    rollback_command: str | None = Field(
        default=None, description="Rolls back; default: the deploy command with the old version."
    )
    scale_command: str | None = Field(default=None, description="Scales to PILOTHOUSE_REPLICAS.")
    status_command: str | None = Field(default=None, description="Exit 0 when healthy.")
    stop_command: str | None = Field(default=None, description="Stops the service.")
    timeout: float = Field(default=600, gt=0, le=86400, description="Seconds per command.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra variables.")


@dataclass
class CommandResult:
    exit_code: int | None
    seconds: float
    timed_out: bool
    last_line: str


async def run_command(
    command: str,
    *,
    env: dict[str, str],
    timeout: float,
    events: Events | None = None,
    source: str = "deploy",
    cwd: str | None = None,
) -> CommandResult:
    """Run `command` in a shell, stream its output to the logs, kill its group on timeout."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env={**child_environ(), **env},
        cwd=cwd,
        start_new_session=True,
    )
    last = ""

    async def pump() -> None:
        nonlocal last
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                last = line
                if events is not None:
                    await events.log(line[:4000], source=source)

    timed_out = False
    try:
        await asyncio.wait_for(asyncio.gather(pump(), proc.wait()), timeout)
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    return CommandResult(proc.returncode, time.monotonic() - started, timed_out, last)


def release_env(plan: RolloutPlan, event: str) -> dict[str, str]:
    spec = plan.spec
    return {
        **spec.env,
        "PILOTHOUSE_SERVICE": spec.service_name,
        "PILOTHOUSE_ENVIRONMENT": spec.environment_name,
        "PILOTHOUSE_VERSION": spec.version,
        "PILOTHOUSE_COMMIT_SHA": spec.commit_sha or "",
        "PILOTHOUSE_IMAGE": spec.image or "",
        "PILOTHOUSE_REPLICAS": str(spec.target_replicas),
        "PILOTHOUSE_DEPLOYMENT_ID": str(plan.deployment_id),
        "PILOTHOUSE_EVENT": event,
    }


class CommandDriver:
    """Runs the service's commands; it has no replicas of its own to supervise."""

    name = "command"
    config_model: ClassVar[type[HookConfig]] = CommandConfig
    supervised: ClassVar[bool] = False

    async def _run(self, plan: RolloutPlan, events: Events, which: str, event: str) -> None:
        cfg = CommandConfig(**plan.spec.config)
        command = getattr(cfg, f"{which}_command") or (
            cfg.deploy_command if which == "rollback" else None
        )
        if not command:
            raise RolloutFailed(f"the service has no {which}_command in its driver_config")
        env = {**release_env(plan, event), **cfg.env}
        result = await run_command(
            command, env=env, timeout=cfg.timeout, events=events, source=which, cwd=cfg.cwd
        )
        if result.timed_out:
            raise RolloutFailed(f"{which} command timed out after {cfg.timeout:g}s")
        if result.exit_code != 0:
            raise RolloutFailed(f"{which} command exited with status {result.exit_code}")
        await events.log(f"{which} command succeeded in {result.seconds:.1f}s", source=which)

    async def rollout(self, plan: RolloutPlan, events: Events) -> RolloutOutcome:
        event = "rollback" if plan.spec.event == "rollback" else "deploy"
        await self._run(plan, events, "rollback" if event == "rollback" else "deploy", event)
        await self._check_status(plan, events, event)
        return RolloutOutcome(instances=plan.spec.target_replicas)

    async def _check_status(self, plan: RolloutPlan, events: Events, event: str) -> None:
        """The status command, when given, gates the outcome: exit 0 means healthy."""
        if CommandConfig(**plan.spec.config).status_command:
            await self._run(plan, events, "status", event)

    async def scale(self, plan: RolloutPlan, events: Events) -> RolloutOutcome:
        await self._run(plan, events, "scale", "scale")
        return RolloutOutcome(instances=plan.spec.target_replicas)

    async def stop(self, replicas: list[ReplicaInfo], events: Events) -> None:
        return None

    async def status(self, replicas: list[ReplicaInfo]) -> dict[uuid.UUID, dict[str, Any]]:
        return {}

    async def logs(self, replica: ReplicaInfo, tail: int = 100) -> list[str]:
        return []

    # -- supervision: the platform behind the commands supervises its own instances ----------

    def alive(self, replica: ReplicaInfo) -> bool:
        return False

    async def restart(self, spec: ServiceSpec, replica: ReplicaInfo, events: Events) -> ReplicaInfo:
        raise RolloutFailed("the command driver does not restart replicas")

    def sample(self, replica: ReplicaInfo) -> Sample | None:
        return None

    async def terminate(self, replica: ReplicaInfo, grace: float) -> int | None:
        return None

    async def route(self, service_id: uuid.UUID, config: dict[str, Any], ports: list[int]) -> None:
        return None

    async def unroute(self, service_id: uuid.UUID, config: dict[str, Any]) -> None:
        return None
