"""The `process` driver: each replica is a local process, started detached, supervised by pid.

A replica runs the service's command with a free port for `{port}` and the artifact's version for
`{version}` (also exported as PILOTHOUSE_VERSION). Its stdout/stderr go to a log file per
replica. Replicas are started in their own session, so they outlive pilothouse; they are known
again by (pid, process start time) when pilothouse comes back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import psutil
from pydantic import BaseModel, ConfigDict, Field

from pilothouse.drivers import remote, sandbox
from pilothouse.drivers.base import (
    Events,
    HookConfig,
    Placing,
    ReplicaInfo,
    RolloutFailed,
    RolloutOutcome,
    RolloutPlan,
    Sample,
    ServiceSpec,
    SupervisedConfig,
)
from pilothouse.drivers.cgroups import CgroupV2, Enforcement, detect
from pilothouse.drivers.command import MAX_LINE
from pilothouse.drivers.readiness import ReadinessSpec, ReadyResult, check_once, wait_ready
from pilothouse.drivers.rolling import plan_rolling_update
from pilothouse.drivers.transport import NodeAccess, TransportPool, TransportUnavailable

#: Seconds between two listings of a node's replicas (liveness and sampling read them).
LIST_EVERY = 1.0
#: A node nobody asked about for this long is no longer listed.
WATCH_SECONDS = 30.0


class VerifySpec(BaseModel):
    """Post-deploy verification: `required` of `checks` probes spread over `window` seconds."""

    model_config = ConfigDict(extra="forbid")

    checks: int = Field(default=0, ge=0, le=100, description="Probes to run; 0 turns it off.")
    required: int = Field(default=1, ge=1, le=100, description="Probes that must pass.")
    window: float = Field(default=5.0, ge=0, le=600, description="Seconds to spread them over.")


class ProcessConfig(SupervisedConfig):
    """`driver_config` of a service run by the process driver (unknown keys are kept)."""

    max_surge: int = Field(default=1, ge=0, le=100, description="Extra replicas during rollout.")
    max_unavailable: int = Field(default=0, ge=0, le=100, description="Replicas that may be down.")
    grace_seconds: float = Field(default=10.0, ge=0, le=600, description="SIGTERM to SIGKILL.")
    drain_seconds: float = Field(
        default=0.3, ge=0, le=60, description="Wait after leaving the router."
    )
    router: str | None = Field(default=None, description="'nginx' to serve a stable port.")
    router_port: int | None = Field(default=None, ge=1, le=65535, description="Stable port.")
    verify: VerifySpec = Field(default_factory=VerifySpec, description="Post-deploy checks.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra variables.")


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_command(command: str, *, port: int, version: str, host: str = "127.0.0.1") -> str:
    """Substitute {port}, {version} and {host} (the address to bind: 127.0.0.1 on this host,
    the node's address on another); other braces are left alone."""
    rendered = command.replace("{port}", str(port)).replace("{version}", version)
    return rendered.replace("{host}", host)


@dataclass
class Spawned:
    pid: int
    started_at: float
    port: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None


def _scrubbed_output(log_path: Path, secrets: list[str]) -> int:
    """A pipe whose other end is the scrubbing relay appending to log_path; returns the write
    end for the replica's stdout (the caller closes it once the replica has it)."""
    read_end, write_end = os.pipe()
    secret_read, secret_write = os.pipe()
    subprocess.Popen(
        [sys.executable, "-m", "pilothouse.drivers.scrubber", str(log_path)],
        stdin=read_end,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(secret_read,),
        env={**sandbox.base_environ(), "PILOTHOUSE_SCRUB_FD": str(secret_read)},
        start_new_session=True,
    )
    os.close(read_end)
    os.close(secret_read)
    payload = b"".join(base64.b64encode(s.encode()) + b"\n" for s in secrets)

    def feed() -> None:
        with os.fdopen(secret_write, "wb") as handle:
            handle.write(payload)

    threading.Thread(target=feed, daemon=True).start()
    return write_end


def spawn(
    command: str,
    *,
    port: int,
    version: str,
    env: dict[str, str],
    log_path: Path,
    cwd: str | None,
    secrets: list[str] | None = None,
    run_as: str | None = None,
) -> Spawned:
    """Start one replica detached (own session), output appended to log_path. With secrets,
    the output goes through the scrubbing relay, so no secret value reaches the file. As root,
    the replica runs as the unprivileged run-as user (drivers/sandbox.py)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    identity = sandbox.popen_identity(run_as)  # before anything starts: a missing user fails
    base = sandbox.child_environ(run_as)
    full_env = {**base, **env, "PILOTHOUSE_VERSION": version, "PORT": str(port)}
    out_fd = (
        _scrubbed_output(log_path, secrets)
        if secrets
        else os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    )
    try:
        popen = subprocess.Popen(
            ["/bin/sh", "-c", "exec " + render_command(command, port=port, version=version)],
            stdout=out_fd,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            **identity,
        )
    finally:
        os.close(out_fd)
    try:
        started_at = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        started_at = 0.0
    return Spawned(popen.pid, started_at, port, log_path, popen)


# Popen objects of replicas this process started, so they can be reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# psutil handles kept between calls so cpu_percent measures the interval since the last one.
_HANDLES: dict[int, psutil.Process] = {}


def register_child(spawned: Spawned) -> None:
    if spawned.popen is not None:
        _CHILDREN[spawned.pid] = spawned.popen


def is_alive(pid: int | None, started_at: float | None) -> bool:
    """True when `pid` is still the process we started (same start time) and not a zombie."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        proc = psutil.Process(pid)
        if started_at and abs(proc.create_time() - started_at) > 0.01:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def exit_code(pid: int | None) -> int | None:
    child = _CHILDREN.get(pid or -1)
    return child.poll() if child is not None else None


async def terminate(pid: int | None, started_at: float | None, grace: float) -> int | None:
    """SIGTERM the replica's process group, SIGKILL after `grace` seconds; returns exit code."""
    if not is_alive(pid, started_at):
        return exit_code(pid)
    assert pid is not None
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return exit_code(pid)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_alive(pid, started_at):
            return exit_code(pid)
        await asyncio.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(100):
        if not is_alive(pid, started_at):
            break
        await asyncio.sleep(0.02)
    return exit_code(pid)


def stats(pid: int | None, started_at: float | None) -> dict[str, float] | None:
    """CPU percent (since the last call) and resident memory in MB of the replica."""
    if not is_alive(pid, started_at):
        return None
    assert pid is not None
    try:
        proc = _HANDLES.get(pid)
        if proc is None:
            proc = _HANDLES[pid] = psutil.Process(pid)
        with proc.oneshot():
            return {
                "cpu_percent": proc.cpu_percent(interval=None),
                "memory_mb": proc.memory_info().rss / (1024 * 1024),
            }
    except psutil.Error:
        return None


async def _tail(path: Path, events: Events, label: str, stop: asyncio.Event) -> None:
    """Forward new lines of a replica's log into the deployment's logs until `stop` is set."""
    position = 0
    while True:
        done = stop.is_set()
        try:
            with open(path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read(4 * MAX_LINE)  # bounded: a huge line never stalls this
        except FileNotFoundError:
            chunk = b""
        cut = chunk.rfind(b"\n")
        if done or len(chunk) - (cut + 1) >= MAX_LINE:
            consumed = chunk  # the end, or a line too long to wait for: taken as it is
        else:
            consumed = chunk[: cut + 1] if cut >= 0 else b""
        position += len(consumed)
        lines = [line[:MAX_LINE] for line in consumed.decode(errors="replace").splitlines()]
        await events.log_many([line for line in lines if line.strip()], source=label)
        if done and len(chunk) < 4 * MAX_LINE:
            return
        if len(chunk) < 4 * MAX_LINE:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)


async def ready_or_stopped(
    ready: ReadinessSpec,
    host: str,
    port: int,
    *,
    alive: Callable[[], bool],
    stop: Callable[[], Awaitable[int | None]],
    output: tuple[Path, Events, uuid.UUID] | None,
) -> ReadyResult:
    """The end of every launch (a process or a container, on this host or another node): wait
    for the replica's readiness while its output goes into the deployment's logs (`output`: its
    log file, the events and the replica; None: not forwarded, as for a restart); one that does
    not become ready is stopped (`stop`; its exit code goes on the result). The output is
    forwarded up to the end, whatever happens."""
    stop_tail = asyncio.Event()
    tailing: asyncio.Task[None] | None = None
    if output is not None:
        log_path, events, replica_id = output
        label = f"replica:{str(replica_id)[:8]}"
        tailing = asyncio.create_task(_tail(log_path, events, label, stop_tail))
    try:
        result = await wait_ready(ready, host, port, alive=alive)
        if not result.ready:
            result.exit_code = await stop()
    except BaseException:
        # The wait's own end (a cancellation above all) is what is raised, not the output's
        # failure to be written.
        stop_tail.set()
        if tailing is not None:
            with contextlib.suppress(Exception):
                await tailing
        raise
    stop_tail.set()
    if tailing is not None:
        await tailing
    return result


class Deferred:
    """A rollout's events with its log lines written behind it: the rollout's log lines and
    its replicas' output are queued and written in order by one background task, so the next
    replica starts without waiting for the store to take them. Replica records go straight
    through, after what is queued (so none overtakes an older one): `starting` carries the pid
    that finds the process again after a crash, `running` is what the supervisor routes to,
    `stopping` must be in before the replica is stopped. `replica_created` and `place`, whose
    answers the rollout needs, go straight through too. `flush` returns once every queued line
    is written and raises the first failure (the store gone: the engine stops the rollout);
    after a failure every call raises it at once."""

    def __init__(self, inner: Events) -> None:
        self.inner = inner
        # Each queued write with the future settled once it is written (or dropped).
        self._queue: deque[tuple[Callable[[], Awaitable[None]], asyncio.Future[None]]] = deque()
        self._last: asyncio.Future[None] | None = None  # the newest queued write's future
        self._writer: asyncio.Task[None] | None = None
        self._failure: Exception | None = None

    def _put(self, write: Callable[[], Awaitable[None]]) -> None:
        if self._failure is not None:
            raise self._failure
        loop = asyncio.get_running_loop()
        self._last = loop.create_future()
        self._queue.append((write, self._last))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._queue:
                write, written = self._queue[0]
                try:
                    await write()
                except Exception as exc:
                    self._failure = exc  # the rest is dropped below
                    break
                self._queue.popleft()
                written.set_result(None)
        finally:
            # Failed or cancelled: what is left is never written; nothing waits on it forever.
            for _write, written in self._queue:
                if not written.done():
                    written.set_result(None)
            self._queue.clear()

    async def _caught_up(self) -> None:
        """Return once every line queued BEFORE this call is written (not those queued
        meanwhile: a chatty replica's output must not hold a record back); raise the first
        failure."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.shield(last)
        if self._failure is not None:
            raise self._failure

    async def flush(self) -> None:
        """Return once every queued record is written; raise the first failure."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._failure is not None:
            raise self._failure

    async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None:
        self._put(lambda: self.inner.log(message, level=level, source=source))

    async def log_many(self, messages: list[str], *, source: str) -> None:
        if messages:
            self._put(lambda: self.inner.log_many(messages, source=source))

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        if self._failure is not None:
            raise self._failure
        return await self.inner.replica_created(
            version, port=port, log_path=log_path, node_id=node_id
        )

    async def replica_changed(
        self, replica_id: uuid.UUID, to: str, *, reason: str | None = None, **fields: Any
    ) -> None:
        """Written before this returns, after what was queued before it."""
        await self._caught_up()
        await self.inner.replica_changed(replica_id, to, reason=reason, **fields)


class PlacingDeferred(Deferred):
    """A Deferred over events that place new replicas (the engine's): `place` goes through."""

    def __init__(self, inner: Events, placing: Placing) -> None:
        super().__init__(inner)
        self.placing = placing  # the same events, as what places

    async def place(self, prefer: uuid.UUID | None = None) -> NodeAccess | None:
        if self._failure is not None:
            raise self._failure
        return await self.placing.place(prefer)


def defer(events: Events) -> Deferred:
    """The events of a rollout, its log lines written behind it; placing when `events` do."""
    return PlacingDeferred(events, events) if isinstance(events, Placing) else Deferred(events)


class Router(Protocol):
    """What the process driver needs from a router (nginx): the replicas serving a service,
    as "host:port" (on any node)."""

    async def set_backends(
        self, service_key: str, listen_port: int, backends: Sequence[str | int]
    ) -> None: ...

    async def remove(self, service_key: str) -> None: ...


@dataclass
class Listing:
    """The last listing of a node's replicas: when it began (monotonic), whether it answered."""

    at: float = 0.0
    ok: bool = False
    replicas: dict[uuid.UUID, remote.RemoteReplica] = field(default_factory=dict)


class ProcessDriver:
    """Rolling updates of processes behind an optional router: on this host (cgroups, run-as
    sandbox, scrubbing relay), or on another node through its transport (a supervising shim per
    replica: drivers/remote.py)."""

    name = "process"
    config_model: ClassVar[type[HookConfig]] = ProcessConfig
    supervised: ClassVar[bool] = True

    def __init__(
        self,
        data_dir: Path,
        router: Router | None = None,
        *,
        cgroups: bool = True,
        transports: TransportPool | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.router = router
        self._cgroups_wanted = cgroups
        self._cgroups: CgroupV2 | None = None
        self._detected = False
        self.transports = transports if transports is not None else TransportPool()
        self._listings: dict[uuid.UUID, Listing] = {}
        self._watched: dict[uuid.UUID, float] = {}  # node id -> when last asked about
        self._launched: dict[uuid.UUID, float] = {}  # replica id -> when its process existed
        self._relays: dict[uuid.UUID, remote.Relay] = {}
        self._let_go: set[remote.Relay] = set()  # channels ending (their shims exit)
        self._poller: asyncio.Task[None] | None = None
        self._listers: dict[uuid.UUID, remote.Lister] = {}  # node id -> its listing channel
        self._closing: set[asyncio.Task[None]] = set()
        # service id -> while a rollout of it runs here, what it serves now (route() keeps
        # within it) and when (monotonic) each replica the rollout started joined that set
        self._rolling: dict[str, tuple[dict[uuid.UUID, ReplicaInfo], dict[uuid.UUID, float]]] = {}

    def cgroups(self) -> CgroupV2 | None:
        """The cgroup v2 hierarchy replicas go in (looked for once), None: sampling."""
        if not self._detected:
            self._detected = True
            if self._cgroups_wanted:
                found = detect()
                self._cgroups = CgroupV2(found.root) if found.root is not None else None
        return self._cgroups

    def _limit(
        self, spec: ServiceSpec, cfg: ProcessConfig, replica_id: uuid.UUID, pid: int
    ) -> Enforcement:
        """Put a new replica under its CPU and memory limits: in a cgroup when the host allows
        it (and the service does not ask for sampling), else the supervisor samples it."""
        groups = self.cgroups() if cfg.limits == "auto" else None
        if groups is not None and groups.place(replica_id, pid, spec.memory_mb, spec.cpu_cores):
            return "cgroup"
        return "sampling"

    def exit_reason(self, replica: ReplicaInfo) -> str | None:
        """`memory: OOM-killed ...` when the kernel killed the replica at its cgroup limit."""
        groups = self.cgroups()
        if groups is None or groups.oom_killed(replica.id) == 0:
            return None
        return "memory: OOM-killed by the kernel at its memory_mb limit (cgroup)"

    def _release(self, replica: ReplicaInfo) -> None:
        groups = self.cgroups()
        if groups is not None:
            groups.release(replica.id)

    def _parse(self, config: dict[str, Any]) -> ProcessConfig:
        """The service's driver_config as this driver reads it."""
        return ProcessConfig(**config)

    async def _before_rollout(
        self,
        spec: ServiceSpec,
        cfg: ProcessConfig,
        current: list[ReplicaInfo],
        events: Events,
    ) -> None:
        """A hook before a rollout starts anything (the container driver resolves and checks
        the image here); raise RolloutFailed to refuse it."""

    def _log_path(self, spec: ServiceSpec, replica_id: uuid.UUID) -> Path:
        return self.data_dir / "replicas" / spec.service_name / f"{replica_id}.log"

    async def _route(self, spec: ServiceSpec, cfg: ProcessConfig, backends: list[str]) -> None:
        if cfg.router and self.router is not None and cfg.router_port:
            await self.router.set_backends(str(spec.service_id), cfg.router_port, sorted(backends))

    # -- nodes ----------------------------------------------------------------------------------

    def _remote(self, replica: ReplicaInfo) -> NodeAccess | None:
        """The replica's node when it is reached through a transport (None: this host)."""
        return self.transports.remote(replica.node_id)

    def host_of(self, replica: ReplicaInfo) -> str:
        """Where the replica is reached from this host (router, readiness, verification)."""
        access = self._remote(replica)
        return access.address if access is not None else "127.0.0.1"

    def backend(self, replica: ReplicaInfo) -> str:
        return f"{self.host_of(replica)}:{replica.port}"

    async def _place(self, events: Events, prefer: uuid.UUID | None = None) -> NodeAccess | None:
        """Where a new replica goes, when the events decide it (the engine's do)."""
        if isinstance(events, Placing):
            access = await events.place(prefer)
            if access is not None:
                self.transports.remember(access)
            return access
        return self.transports.known(prefer)

    def _watch(self, node_id: uuid.UUID) -> None:
        """Keep listing this node about every second (the poller starts on first need)."""
        self._watched[node_id] = time.monotonic()
        if self._poller is None or self._poller.done():
            with contextlib.suppress(RuntimeError):  # no running loop: the next call starts it
                self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            now = time.monotonic()
            nodes = [n for n, at in self._watched.items() if now - at < WATCH_SECONDS]
            if not nodes:
                return
            await asyncio.gather(*(self.refresh(n) for n in nodes), return_exceptions=True)
            await asyncio.sleep(LIST_EVERY)

    async def refresh(self, node_id: uuid.UUID) -> None:
        """List the node's replicas now (a request on the node's listing channel: no command
        started per listing). A node that does not answer keeps its last listing, marked
        failed: that is not evidence its replicas died."""
        access = self.transports.remote(node_id)
        if access is None:
            return
        began = time.monotonic()
        try:
            found = await self.lister(access).list()
        except (TransportUnavailable, remote.RemoteError, TimeoutError, OSError, ValueError):
            self._listings.setdefault(node_id, Listing()).ok = False
            return
        self._listings[node_id] = Listing(began, True, {r.replica_id: r for r in found})

    def lister(self, access: NodeAccess) -> remote.Lister:
        """The node's long-running listing channel (a new one when its transport changed)."""
        transport = self.transports.get(access)
        held = self._listers.get(access.id)
        if held is None or held.transport is not transport:
            if held is not None:
                self._let_go_lister(held)
            held = self._listers[access.id] = remote.Lister(transport, access.id)
        return held

    def _let_go_lister(self, lister: remote.Lister) -> None:
        task = asyncio.get_running_loop().create_task(lister.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _seen(self, replica: ReplicaInfo, access: NodeAccess) -> remote.RemoteReplica | None:
        listing = self._listings.get(access.id)
        found = listing.replicas.get(replica.id) if listing is not None else None
        if found is None or found.pid != replica.pid:
            return None
        if abs(found.started_at - (replica.process_started_at or 0.0)) > 0.05:
            return None
        return found

    def _remote_alive(self, replica: ReplicaInfo, access: NodeAccess) -> bool:
        self._watch(access.id)
        relay = self._relays.get(replica.id)
        if relay is not None and relay.pid == replica.pid and relay.exited:
            return False
        listing = self._listings.get(access.id)
        if listing is None or not listing.ok:
            return True  # not listed yet, or the node does not answer: not a death
        if listing.at < self._launched.get(replica.id, -math.inf):
            return True  # listed before this process existed
        return self._seen(replica, access) is not None

    async def _launch_remote(
        self,
        spec: ServiceSpec,
        cfg: ProcessConfig,
        ready: ReadinessSpec,
        events: Events,
        replica_id: uuid.UUID,
        access: NodeAccess,
        *,
        log_path: Path,
        reason: str | None = None,
        tail: bool = True,
    ) -> tuple[Spawned, ReadyResult]:
        """Start one replica on the node under its shim (its variables over the channel's
        stdin), relay its scrubbed output to log_path, wait for readiness at the node's
        address. Raises OSError if it cannot start."""
        order = remote.Order(
            spec.command or "",
            spec.version,
            {**spec.env, **cfg.env},
            cfg.cwd,
            access.address,
        )
        release = str(spec.release_id) if spec.release_id else "-"
        self._launched[replica_id] = math.inf
        try:
            started = await remote.start(
                self.transports.get(access), access.id, replica_id, release, order
            )
        except (TransportUnavailable, remote.RemoteError) as exc:
            self._launched.pop(replica_id, None)
            raise OSError(f"on node {access.name}: {exc}") from None
        self._launched[replica_id] = time.monotonic()
        previous = self._relays.pop(replica_id, None)
        if previous is not None:
            self._drop(previous)
        relay = remote.Relay(
            started.channel, log_path, spec.secrets, pid=started.pid, marker=started.marker
        ).begin()
        self._relays[replica_id] = relay
        self._watch(access.id)
        await events.replica_changed(
            replica_id,
            "starting",
            reason=reason,
            pid=started.pid,
            process_started_at=started.started_at,
            ports={"http": started.port},
            log_path=str(log_path),
            enforcement="sampling",
            memory_over_since=None,
            node_id=access.id,
        )
        result = await ready_or_stopped(
            ready,
            access.address,
            started.port,
            alive=lambda: not relay.exited,
            stop=lambda: self._stop_remote(
                access, replica_id, started.pid, started.started_at, cfg.grace_seconds
            ),
            output=(log_path, events, replica_id) if tail else None,
        )
        spawned = Spawned(started.pid, started.started_at, started.port, log_path)
        return spawned, result

    async def _stop_remote(
        self,
        access: NodeAccess,
        replica_id: uuid.UUID,
        pid: int | None,
        started_at: float | None,
        grace: float,
    ) -> int | None:
        """Stop a replica on its node (TERM its process group, KILL after grace); its exit code
        when its shim reported it. A node that does not answer leaves it to fencing."""
        if pid:
            with contextlib.suppress(
                TransportUnavailable, remote.RemoteError, TimeoutError, OSError, ValueError
            ):
                await remote.stop_many(
                    self.transports.get(access), [(pid, started_at or 0.0)], grace
                )
        relay = self._relays.get(replica_id)
        if relay is None or relay.pid != pid:
            return None
        for _ in range(50):  # the shim reports the exit right after
            if relay.exited or (relay.task is not None and relay.task.done()):
                break
            await asyncio.sleep(0.02)
        self._relays.pop(replica_id, None)
        self._drop(relay)
        return relay.exit_code

    def _drop(self, relay: remote.Relay) -> None:
        relay.close()
        if relay.task is not None and not relay.task.done():
            self._let_go.add(relay)
            relay.task.add_done_callback(lambda _: self._let_go.discard(relay))

    async def close(self, timeout: float = 5.0) -> None:
        """Let go of every relay (their replicas go on) and stop listing nodes."""
        relays, self._relays = [*self._relays.values(), *self._let_go], {}
        await asyncio.gather(*(r.finish(timeout) for r in relays))
        self._watched.clear()  # the poller ends after its current listing
        if self._poller is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._poller), timeout)
        listers, self._listers = list(self._listers.values()), {}
        await asyncio.gather(*(lister.close() for lister in listers), *self._closing)

    async def _stop_any(self, replica: ReplicaInfo, grace: float) -> int | None:
        access = self._remote(replica)
        if access is None:
            code = await terminate(replica.pid, replica.process_started_at, grace)
            self._release(replica)
            return code
        return await self._stop_remote(
            access, replica.id, replica.pid, replica.process_started_at, grace
        )

    async def _launch(
        self,
        spec: ServiceSpec,
        cfg: ProcessConfig,
        ready: ReadinessSpec,
        events: Events,
        replica_id: uuid.UUID,
        *,
        port: int,
        log_path: Path,
        reason: str | None = None,
        tail: bool = True,
        node_id: uuid.UUID | None = None,
    ) -> tuple[Spawned, ReadyResult]:
        """Spawn one replica (recorded as `starting`) and wait for its readiness; with `tail`,
        its output goes into the deployment's logs meanwhile. Raises OSError if it cannot
        start."""
        spawned = spawn(
            spec.command or "",
            port=port,
            version=spec.version,
            env={**spec.env, **cfg.env},
            log_path=log_path,
            cwd=cfg.cwd,
            secrets=spec.secrets,
            run_as=spec.run_as,
        )
        register_child(spawned)
        enforcement = self._limit(spec, cfg, replica_id, spawned.pid)
        try:
            await events.replica_changed(
                replica_id,
                "starting",
                reason=reason,
                pid=spawned.pid,
                process_started_at=spawned.started_at,
                ports={"http": port},
                log_path=str(log_path),
                enforcement=enforcement,
                memory_over_since=None,
                **({"node_id": node_id} if node_id is not None else {}),
            )
        except BaseException:
            # Its pid is not in the store: nothing would find it again, so it is not left
            # running (the store's failure, or the cancellation, is what is raised).
            await asyncio.shield(terminate(spawned.pid, spawned.started_at, cfg.grace_seconds))
            raise
        result = await ready_or_stopped(
            ready,
            "127.0.0.1",
            port,
            alive=lambda: is_alive(spawned.pid, spawned.started_at),
            stop=lambda: terminate(spawned.pid, spawned.started_at, cfg.grace_seconds),
            output=(log_path, events, replica_id) if tail else None,
        )
        return spawned, result

    async def _start_one(
        self, spec: ServiceSpec, cfg: ProcessConfig, ready: ReadinessSpec, events: Events
    ) -> ReplicaInfo:
        """Start one replica and wait until it is ready; raise RolloutFailed if it is not."""
        if not spec.command:
            raise RolloutFailed(
                "the service has no command to start "
                "(set one: `pilothouse service update NAME --command ...`)"
            )
        access = await self._place(events)
        where = access if access is not None and access.kind != "local" else None
        port = free_port() if where is None else None
        placed = {"node_id": access.id} if access is not None else {}
        replica_id = await events.replica_created(spec.version, port=port, log_path=None, **placed)
        log_path = self._log_path(spec, replica_id)
        try:
            if where is not None:
                spawned, result = await self._launch_remote(
                    spec, cfg, ready, events, replica_id, where, log_path=log_path
                )
                port = spawned.port
            else:
                assert port is not None
                spawned, result = await self._launch(
                    spec, cfg, ready, events, replica_id, port=port, log_path=log_path
                )
        except OSError as exc:
            await events.replica_changed(replica_id, "failed", log_path=str(log_path))
            raise RolloutFailed(f"could not start replica: {exc}") from None
        if not result.ready:
            await events.replica_changed(
                replica_id, "failed", exit_code=result.exit_code, keep_running=False
            )
            raise RolloutFailed(f"replica on port {port} {result.detail}")
        await events.replica_changed(replica_id, "running", keep_running=True, health="healthy")
        on = f" of node {where.name} ({where.address})" if where is not None else ""
        await events.log(
            f"replica {str(replica_id)[:8]} ready on port {port}{on} in {result.seconds:.2f}s"
        )
        return ReplicaInfo(
            replica_id,
            spec.version,
            spawned.pid,
            spawned.started_at,
            port,
            str(log_path),
            node_id=access.id if access is not None else None,
        )

    async def _retire(
        self,
        replica: ReplicaInfo,
        cfg: ProcessConfig,
        events: Events,
        marked: asyncio.Event | None = None,
    ) -> None:
        """Stop a replica that has already left the router: record it `stopping` (then set
        `marked`), drain, SIGTERM, SIGKILL. It is stopped even when `stopping` cannot be
        recorded (the store gone: that error is raised after)."""
        try:
            await events.replica_changed(replica.id, "stopping", keep_running=False)
        finally:
            if marked is not None:
                marked.set()
            if cfg.drain_seconds:
                await asyncio.sleep(cfg.drain_seconds)
            code = await self._stop_any(replica, cfg.grace_seconds)
        await events.replica_changed(replica.id, "stopped", exit_code=code)

    async def rollout(self, plan: RolloutPlan, events: Events) -> RolloutOutcome:
        """Reach target replicas of the plan's version: keep live ones of that version, start the
        missing ones (max_surge at a time, each health-gated), retire the others.

        Returns once traffic is entirely on the target set; old replicas still draining are
        handed back as `cleanup` (like Kubernetes, which counts terminating pods as gone)."""
        spec = plan.spec
        cfg = self._parse(spec.config)
        ready = ReadinessSpec(**spec.health_check)
        events = deferred = defer(events)  # log lines written behind the rollout
        await self._before_rollout(spec, cfg, plan.current, events)
        nodes = {a.id for r in plan.current if (a := self._remote(r)) is not None}
        await asyncio.gather(*(self.refresh(n) for n in nodes))  # liveness as of now
        alive = [r for r in plan.current if self.alive(r)]
        # A restart or a config update replaces every replica (each is a new release of the
        # same version with its own pinned config); otherwise live replicas of it are kept.
        restart = spec.event in ("restart", "config_update")
        same = [] if restart else [r for r in alive if r.version == spec.version]
        keep = same[: spec.target_replicas]
        old = [r for r in alive if r not in keep]
        serving = {r.id: r for r in alive}
        joined: dict[uuid.UUID, float] = {}
        self._rolling[str(spec.service_id)] = (serving, joined)
        routing: list[asyncio.Task[None]] = []
        stopping: list[asyncio.Task[None]] = []
        marks: list[asyncio.Event] = []  # one per retired replica: set once it is `stopping`

        def route_now() -> None:
            """Queue a router change to what is serving now (the router applies them in order),
            so starting the next replica does not wait for nginx to reload."""
            backends = [self.backend(r) for r in serving.values() if r.port]
            routing.append(asyncio.create_task(self._route(spec, cfg, backends)))

        def retire(victims: list[ReplicaInfo]) -> None:
            """Take the victims out of the router, then stop them in the background."""
            for victim in victims:
                serving.pop(victim.id, None)
            route_now()
            change = routing[-1]
            for victim in victims:
                marks.append(asyncio.Event())
                stopping.append(
                    asyncio.create_task(self._retire_after(change, victim, cfg, events, marks[-1]))
                )

        new: list[ReplicaInfo] = []
        missing = spec.target_replicas - len(keep)
        if missing > 0:
            await events.log(
                f"rolling {spec.service_name} to {spec.version}: {missing} new replica(s), "
                f"{len(old)} to retire (surge {cfg.max_surge}, unavailable {cfg.max_unavailable})"
            )
        rolling = plan_rolling_update(
            keep=len(keep),
            old=len(old),
            target=spec.target_replicas,
            max_surge=cfg.max_surge,
            max_unavailable=cfg.max_unavailable,
        )
        try:
            for step in rolling.steps:
                if step.retire_first:
                    ahead, old = old[: step.retire_first], old[step.retire_first :]
                    retire(ahead)
                started = await asyncio.gather(
                    *(self._start_one(spec, cfg, ready, events) for _ in range(step.start)),
                    return_exceptions=True,
                )
                ok = [r for r in started if isinstance(r, ReplicaInfo)]
                for replica in ok:
                    serving[replica.id] = replica
                    joined[replica.id] = time.monotonic()
                    new.append(replica)
                errors = [r for r in started if isinstance(r, BaseException)]
                if errors:
                    raise errors[0]
                # One router change per step: the new replicas in, as many old ones out.
                victims, old = old[: step.retire_after], old[step.retire_after :]
                retire(victims)
            # What is left of the old set (surplus replicas of the version included).
            if old or not routing:
                retire(old)
            await asyncio.gather(*routing)
            await self._verify(spec, cfg, ready, list(serving.values()), events)
            # No replica out of the router is still recorded `running` at success (a listing
            # right after the deploy shows the new release alone); they may still drain.
            await asyncio.gather(*(mark.wait() for mark in marks))
            await deferred.flush()  # every line written before success
        except RolloutFailed:
            # Leave the old replicas serving; stop only what this rollout started.
            # The rollout's failure is what is raised: a store failure while stopping the new
            # replicas does not replace it (nor keep them from being stopped).
            await asyncio.gather(*routing, return_exceptions=True)
            for replica in new:
                serving.pop(replica.id, None)
            try:
                await self._route(spec, cfg, [self.backend(r) for r in serving.values() if r.port])
            finally:
                stopping.extend(asyncio.create_task(self._retire(r, cfg, events)) for r in new)
                try:
                    await asyncio.gather(*stopping, return_exceptions=True)
                finally:
                    with contextlib.suppress(Exception):
                        await deferred.flush()  # the engine reads what is live next
                    self._rolling.pop(str(spec.service_id), None)
            raise
        except BaseException:
            self._rolling.pop(str(spec.service_id), None)
            await asyncio.gather(*routing, *stopping, return_exceptions=True)
            with contextlib.suppress(Exception):
                await deferred.flush()
            raise
        live = keep + new
        cleanup = asyncio.ensure_future(self._stopped(stopping, deferred)) if stopping else None
        if cleanup is None:
            self._rolling.pop(str(spec.service_id), None)
        else:  # the old replicas are marked stopping in the store only as they drain
            cleanup.add_done_callback(lambda _: self._rolling.pop(str(spec.service_id), None))
        return RolloutOutcome(instances=len(live), replicas=[r.id for r in live], cleanup=cleanup)

    @staticmethod
    async def _stopped(stopping: list[asyncio.Task[None]], deferred: Deferred) -> None:
        """The old replicas stopped and recorded so (a rollout's `cleanup`)."""
        try:
            await asyncio.gather(*stopping)
        finally:
            await deferred.flush()

    async def _retire_after(
        self,
        change: asyncio.Task[None],
        replica: ReplicaInfo,
        cfg: ProcessConfig,
        events: Events,
        marked: asyncio.Event,
    ) -> None:
        try:
            await change  # out of the router first
            await self._retire(replica, cfg, events, marked)
        finally:
            marked.set()  # whatever happened, nothing waits on it forever

    async def _verify(
        self,
        spec: ServiceSpec,
        cfg: ProcessConfig,
        ready: ReadinessSpec,
        replicas: list[ReplicaInfo],
        events: Events,
    ) -> None:
        """M of N probes over a window, against every serving replica."""
        verify = cfg.verify
        if verify.checks == 0 or not replicas:
            return
        passed = 0
        pause = verify.window / max(verify.checks - 1, 1)
        for i in range(verify.checks):
            results = [await check_once(ready, self.host_of(r), r.port or 0) for r in replicas]
            if all(ok for ok, _ in results):
                passed += 1
            if i < verify.checks - 1:
                await asyncio.sleep(pause)
        await events.log(
            f"verification: {passed} of {verify.checks} checks passed (need {verify.required})",
            source="verification",
        )
        if passed < verify.required:
            raise RolloutFailed(
                f"post-deploy verification failed: {passed} of {verify.checks} checks passed, "
                f"{verify.required} needed"
            )

    async def scale(self, plan: RolloutPlan, events: Events) -> RolloutOutcome:
        """Scaling is a rollout to the same version with a new target."""
        return await self.rollout(plan, events)

    async def stop(self, replicas: list[ReplicaInfo], events: Events) -> None:
        cfg = ProcessConfig()
        await asyncio.gather(*(self._retire(r, cfg, events) for r in replicas))

    async def status(self, replicas: list[ReplicaInfo]) -> dict[uuid.UUID, dict[str, Any]]:
        out: dict[uuid.UUID, dict[str, Any]] = {}
        for node_id in {a.id for r in replicas if (a := self._remote(r)) is not None}:
            await self.refresh(node_id)
        for replica in replicas:
            sample = self.sample(replica)
            figures = (
                {"cpu_percent": sample.cpu_percent, "memory_mb": sample.memory_mb}
                if sample is not None
                else None
            )
            out[replica.id] = {"alive": figures is not None, **(figures or {})}
        return out

    async def logs(self, replica: ReplicaInfo, tail: int = 100) -> list[str]:
        if not replica.log_path:
            return []
        try:
            with open(replica.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 256 * 1024))
                lines = handle.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return lines[-tail:]

    # -- supervision ----------------------------------------------------------------------------

    def alive(self, replica: ReplicaInfo) -> bool:
        """On this host: by pid and start time. On another node: by its last listing (about
        every second); a node that does not answer is not evidence of death, so its replicas
        stay alive here (the nodes capability declares the node unreachable)."""
        access = self._remote(replica)
        if access is not None:
            return self._remote_alive(replica, access)
        return is_alive(replica.pid, replica.process_started_at)

    async def restart(self, spec: ServiceSpec, replica: ReplicaInfo, events: Events) -> ReplicaInfo:
        """The crashed replica again: same id and version, a fresh port, the same log file; on
        its node when that one is ready, else on a placed one."""
        if not spec.command:
            raise RolloutFailed(
                "the service has no command to start "
                "(set one: `pilothouse service update NAME --command ...`)"
            )
        cfg = ProcessConfig(**spec.config)
        log_path = Path(replica.log_path) if replica.log_path else self._log_path(spec, replica.id)
        access = await self._place(events, prefer=replica.node_id)
        where = access if access is not None and access.kind != "local" else None
        ready = ReadinessSpec(**spec.health_check)
        try:
            if where is not None:
                spawned, result = await self._launch_remote(
                    spec,
                    cfg,
                    ready,
                    events,
                    replica.id,
                    where,
                    log_path=log_path,
                    reason="restart after crash",
                    tail=False,
                )
            else:
                spawned, result = await self._launch(
                    spec,
                    cfg,
                    ready,
                    events,
                    replica.id,
                    port=free_port(),
                    log_path=log_path,
                    reason="restart after crash",
                    tail=False,
                    node_id=access.id if access is not None else None,
                )
        except OSError as exc:
            raise RolloutFailed(f"could not start replica: {exc}") from None
        if not result.ready:
            raise RolloutFailed(result.detail)
        return ReplicaInfo(
            replica.id,
            spec.version,
            spawned.pid,
            spawned.started_at,
            spawned.port,
            str(log_path),
            node_id=access.id if access is not None else replica.node_id,
        )

    def sample(self, replica: ReplicaInfo) -> Sample | None:
        access = self._remote(replica)
        if access is not None:
            self._watch(access.id)
            seen = self._seen(replica, access)
            return Sample(seen.cpu_percent, seen.memory_mb) if seen is not None else None
        figures = stats(replica.pid, replica.process_started_at)
        return Sample(figures["cpu_percent"], figures["memory_mb"]) if figures else None

    async def terminate(self, replica: ReplicaInfo, grace: float) -> int | None:
        return await self._stop_any(replica, grace)

    async def route(
        self,
        service_id: uuid.UUID,
        config: dict[str, Any],
        backends: list[str],
        *,
        read_at: float | None = None,
    ) -> None:
        """Point the router at `backends` (the supervisor's, read from the store at `read_at`,
        monotonic). While a rollout of the service runs here, only those it serves now: the
        store still says `running` of a replica the rollout has taken out of the router to stop
        it, and the router applies changes in order, so a store read racing the rollout would
        put a stopping replica back. And the replicas the rollout put in the router after the
        read began stay: the read may have missed them (it would drop a ready replica until the
        next route)."""
        cfg = ProcessConfig(**config)
        if cfg.router and self.router is not None and cfg.router_port:
            rolling = self._rolling.get(str(service_id))
            if rolling is not None:
                serving, joined = rolling
                allowed = {self.backend(r) for r in serving.values() if r.port}
                kept = {b for b in backends if b in allowed}
                if read_at is not None:
                    kept.update(
                        self.backend(r)
                        for r in serving.values()
                        if r.port and joined.get(r.id, -math.inf) >= read_at
                    )
                backends = list(kept)
            await self.router.set_backends(str(service_id), cfg.router_port, sorted(backends))

    async def unroute(self, service_id: uuid.UUID, config: dict[str, Any]) -> None:
        cfg = ProcessConfig(**config)
        if cfg.router and self.router is not None and cfg.router_port:
            await self.router.remove(str(service_id))
