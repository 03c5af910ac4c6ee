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
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from pilothouse.drivers import sandbox
from pilothouse.drivers.base import (
    Events,
    HookConfig,
    ReplicaInfo,
    RolloutFailed,
    RolloutOutcome,
    RolloutPlan,
    Sample,
    ServiceSpec,
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


#: A line longer than this is stored cut (with a marker); the rest of it is skipped.
MAX_LINE = 64 * 1024


def _cut(line: bytes) -> str:
    """One line as text, cut to MAX_LINE bytes with a marker when longer."""
    if len(line) <= MAX_LINE:
        return line.decode(errors="replace").rstrip()
    return f"{line[:MAX_LINE].decode(errors='replace')} [line cut at {MAX_LINE // 1024} KiB]"


async def read_lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Lines of `stream` without their newline; a line over MAX_LINE bytes comes out cut to
    MAX_LINE with a marker, and the rest of it is skipped (never an error)."""
    pending = b""
    skipping = False
    while chunk := await stream.read(65536):
        pending += chunk
        while True:
            cut = pending.find(b"\n")
            if cut < 0:
                if len(pending) > MAX_LINE:
                    if not skipping:
                        yield _cut(pending)
                    skipping, pending = True, b""
                break
            line, pending = pending[:cut], pending[cut + 1 :]
            if skipping:
                skipping = False  # the end of a cut line
                continue
            yield _cut(line)
    if pending and not skipping:
        yield _cut(pending)


async def exited(proc: subprocess.Popen[bytes]) -> int:
    """Wait for `proc` without holding a thread: its pidfd becomes readable when it exits
    (polling where pidfds are missing). Reaps it and returns its exit code."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        while proc.poll() is None:
            await asyncio.sleep(0.05)
        return proc.returncode
    try:
        done: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(pidfd, readable)
        try:
            if proc.poll() is None:
                await done
        finally:
            loop.remove_reader(pidfd)
    finally:
        os.close(pidfd)
    return proc.wait()


def kill_group(pid: int) -> None:
    """SIGKILL a command's whole process group (what it started in the background too)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_command(
    command: str,
    *,
    env: dict[str, str],
    timeout: float,
    events: Events | None = None,
    source: str = "deploy",
    cwd: str | None = None,
    run_as: str | None = None,
) -> CommandResult:
    """Run `command` in a shell, stream its output to the logs (whole lines: the events object
    scrubs, then cuts them), and kill its process group on every failure path: timeout,
    non-zero exit, cancellation, or an error while storing its output."""
    started = time.monotonic()
    # The stdlib's Popen, not the event loop's: it closes every inherited descriptor (uvloop
    # leaks its own into children, and a background child holding the output pipe open
    # would keep a finished command "running" until its timeout).
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**sandbox.child_environ(run_as), **env},
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
        **sandbox.popen_identity(run_as),
    )
    assert proc.stdout is not None
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), proc.stdout
    )
    last = ""

    async def pump() -> None:
        nonlocal last
        async for line in read_lines(reader):
            if line:
                last = line
                if events is not None:
                    await events.log(line, source=source)

    async def finish() -> None:
        await exited(proc)
        if proc.returncode != 0:
            kill_group(proc.pid)  # a failed command leaves nothing running behind it
        await pumper  # the rest of its output (EOF once every writer is gone)

    pumper = asyncio.ensure_future(pump())
    timed_out = False
    try:
        await asyncio.wait_for(finish(), timeout)
    except TimeoutError:
        timed_out = True
        kill_group(proc.pid)
        await exited(proc)
    except BaseException:
        kill_group(proc.pid)
        raise
    finally:
        pumper.cancel()
        transport.close()
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
            command,
            env=env,
            timeout=cfg.timeout,
            events=events,
            source=which,
            cwd=cfg.cwd,
            run_as=plan.spec.run_as,
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

    async def route(
        self,
        service_id: uuid.UUID,
        config: dict[str, Any],
        backends: list[str],
        *,
        read_at: float | None = None,
    ) -> None:
        return None

    async def unroute(self, service_id: uuid.UUID, config: dict[str, Any]) -> None:
        return None
