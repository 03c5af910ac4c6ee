"""The `container` driver: each replica is an OCI container run by podman (or the docker CLI).

It is the process driver's rolling update, routing (nginx), verification and supervision with
containers instead of processes (docs/containers.md):

- **Image**: before a rollout starts anything, the artifact's image (`image_uri`, else the
  service's `image`) is looked up locally, pulled when missing, and its digests (image id,
  manifest and repository digests) compared with the artifact's `image_digest`: a mismatch
  refuses the rollout ("supply chain"). Containers run the resolved image id, so every replica
  runs exactly the checked image; the replica records `container_id` and `image_digest`.
- **Resources**: `--cpus` and `--memory` (= `--memory-swap`) from the service, one CDI
  `--device` per GPU, a named volume at `data_path` when set, holding at most `storage_gb`
  where the host allows it (a loop-mounted ext4 image: podman as root; else no size limit, and
  the deployment log says why; storage_gb is reserved by placement in every case).
- **Variables** go through `--env-file`: a private (0600) temporary file, removed as soon as the
  engine has read it; never a value on the command line. Output is followed with `logs
  --follow` into the same scrubbing relay as process replicas.
- **Supervision**: the container's main process (its pid and start time, recorded on the
  replica) tells whether it lives, so pilothouse adopts running containers after a restart;
  containers carry labels (`pilothouse.service`, `pilothouse.replica`, `pilothouse.version`),
  and a rollout removes labelled containers of the service that no live replica owns (left by
  a crash half-way). An OOM kill is read from the engine (`State.OOMKilled`) and recorded as the
  restart reason. Stats (CPU, memory) come from `stats --no-stream`, refreshed in the
  background.
- **Few engine calls** (each is a Go process competing for the CPU with the replicas): a start
  is `run` plus one `inspect` read while readiness is polled; a retirement one `rm --force
  --time` (podman); the checks before a rollout run side by side (bench/containers.py
  --profile counts them).
- **Other nodes** (docs/multihost.md): every engine command goes through the node's
  transport (SSH). A node is prepared (image resolved and checked there, orphans removed)
  before its first replica of a rollout starts; variables are an env-file's text on the
  engine's stdin (`--env-file /dev/stdin`: nothing on the node's disk or a command line); the
  port is published on the node's address (picked by the engine, read back by `inspect`);
  `logs --follow` is relayed back and scrubbed (drivers/remote.Relay); liveness and figures
  come from one `ps` (and a `stats`) per node per poll, read by the process driver's per-node
  listing and poller.
- Podman on hosts where crun cannot run: pilothouse writes its own containers.conf (runc and
  lowered default ulimits) and points CONTAINERS_CONF at it; no system file is edited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import psutil
from pydantic import Field

from pilothouse.drivers import oci, remote
from pilothouse.drivers.base import (
    Events,
    HookConfig,
    ReplicaInfo,
    RolloutFailed,
    Sample,
    ServiceSpec,
)
from pilothouse.drivers.process import (
    Listing,
    ProcessConfig,
    ProcessDriver,
    Router,
    _scrubbed_output,
    free_port,
    is_alive,
    ready_or_stopped,
    render_command,
)
from pilothouse.drivers.readiness import ReadinessSpec
from pilothouse.drivers.transport import NodeAccess, Transport, TransportPool, TransportUnavailable

LABEL_SERVICE = "pilothouse.service"
LABEL_REPLICA = "pilothouse.replica"
LABEL_VERSION = "pilothouse.version"
LABEL_NODE = "pilothouse.node"  # containers on another node: the node's id
LABEL_RELEASE = "pilothouse.release"  # ... and the deployment that started it (fencing)
STATS_TTL = 2.0  # seconds a `stats` answer is reused
RUN_WAIT = 5.0  # seconds a retired replica's removal waits for a `run` in progress here
#: The lowered default ulimits (podman with runc here: docs/containers.md).
NOFILE, NPROC = 20000, 32768


class ContainerConfig(ProcessConfig):
    """`driver_config` of a service run by the container driver (unknown keys are kept)."""

    container_port: int = Field(
        default=8000, ge=1, le=65535, description="Port the app listens on inside the container."
    )
    network: Literal["bridge", "host"] = Field(
        default="bridge",
        description="bridge: publish a free host port on 127.0.0.1; host: the host's network "
        "(the app listens on $PORT).",
    )
    data_path: str | None = Field(
        default=None,
        description="Mount the service's named volume at this path (at most storage_gb where "
        "the host allows it: docs/containers.md).",
    )
    gpu_device: str = Field(
        default="nvidia.com/gpu", description="CDI device kind for GPUs (`<kind>=<index>`)."
    )
    pull: Literal["missing", "never"] = Field(
        default="missing", description="Pull the image when it is not present locally."
    )
    start_timeout: float = Field(
        default=120, gt=0, le=3600, description="Seconds an engine command may take."
    )


@dataclass
class Started:
    container_id: str
    pid: int
    started_at: float
    port: int
    log_path: Path


@dataclass
class _Stats:
    at: float = 0.0
    figures: dict[str, oci.StatsLine] = field(default_factory=dict)
    refreshing: asyncio.Task[None] | None = None


def kernel_log(limit: int = 4000) -> list[str]:
    """The newest lines of the kernel log (/dev/kmsg, read without blocking); [] when it
    cannot be read (not root, a container without it)."""
    lines: list[str] = []
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return lines
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError:  # EPIPE: a record was overwritten while reading; go on
                continue
            if not record:
                break
            lines.append(record.decode(errors="replace").split(";", 1)[-1].strip())
    finally:
        os.close(fd)
    return lines[-limit:]


def volume_name(spec: ServiceSpec) -> str:
    """The named volume of a service's storage (`data_path`)."""
    return f"pilothouse-{spec.service_name}-data"


def make_fs_image(path: Path, size_gb: int) -> str | None:
    """A sparse file of `size_gb` GiB with an ext4 file system (no reserved blocks: all of it
    is the service's); None when made (or already there), else why not."""
    if path.exists():
        return None
    mkfs = shutil.which("mkfs.ext4") or (
        "/usr/sbin/mkfs.ext4" if Path("/usr/sbin/mkfs.ext4").exists() else None
    )
    if mkfs is None:
        return "mkfs.ext4 is not installed"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as handle:
        handle.truncate(size_gb * 1024**3)
    done = subprocess.run(
        [mkfs, "-q", "-F", "-m", "0", str(partial)], capture_output=True, timeout=300, check=False
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        return f"mkfs.ext4 failed: {lines[-1] if lines else done.returncode}"
    partial.rename(path)
    return None


def container_name(replica_id: uuid.UUID) -> str:
    """The engine's name of a replica's container (unique: one container per replica)."""
    return f"ph-{replica_id}"


def run_spec(
    spec: ServiceSpec,
    cfg: ContainerConfig,
    replica_id: uuid.UUID,
    *,
    image: str,
    command: list[str],
    labels: dict[str, str] | None = None,
    **where: Any,
) -> oci.RunSpec:
    """What every replica's container shares (name, labels, limits, volume, GPUs, command);
    `where` holds what differs between this host and another node (ports, env-file, address)."""
    return oci.RunSpec(
        name=container_name(replica_id),
        image=image,
        labels={
            LABEL_SERVICE: str(spec.service_id),
            LABEL_REPLICA: str(replica_id),
            LABEL_VERSION: spec.version,
            **(labels or {}),
        },
        cpus=spec.cpu_cores,
        memory_mb=spec.memory_mb,
        volume=volume_name(spec) if cfg.data_path else None,
        volume_target=cfg.data_path or "/data",
        gpus=spec.gpu_units,
        gpu_device=cfg.gpu_device,
        command=command,
        **where,
    )


class EngineError(RuntimeError):
    """An engine command failed; the message carries its last output line."""


class EngineMissing(EngineError):
    """The engine is not installed on the node (its shell answered 127: command not found)."""


async def engine_on(
    transport: Transport,
    argv: list[str],
    *,
    runtime: str | None,
    timeout: float = 120,
    input: bytes | None = None,
) -> str:
    """An engine command on another node through its transport: podman's `--runtime` given on
    the command line (no containers.conf is written there); its stdout, EngineError naming the
    node when it fails or does not answer, EngineMissing when the engine is not there."""
    try:
        done = await transport.run(oci.with_globals(argv, runtime), input=input, timeout=timeout)
    except TransportUnavailable as exc:
        raise EngineError(str(exc)) from None
    except TimeoutError:
        raise EngineError(
            f"{argv[0]} {argv[1]} timed out after {timeout:g}s on node {transport.node}"
        ) from None
    except FileNotFoundError:
        raise EngineMissing(f"node {transport.node}: {argv[0]} is not installed") from None
    except OSError as exc:
        raise EngineError(f"node {transport.node}: {exc.strerror or exc}") from None
    if done.exit_status == 127:
        raise EngineMissing(f"node {transport.node}: {argv[0]} is not installed")
    if done.exit_status != 0:
        err = done.stderr.decode(errors="replace")
        lines = [line for line in err.splitlines() if line.strip()]
        last = lines[-1][:500] if lines else f"exit status {done.exit_status}"
        raise EngineError(f"on node {transport.node}: {last}")
    return done.stdout.decode(errors="replace")


async def containers_on(
    transport: Transport, node_id: uuid.UUID, *, engine: str, runtime: str | None
) -> list[oci.Listed]:
    """Every pilothouse container on the node (running or not), by the node's label: one
    `ps`. EngineError when the node does not answer, EngineMissing without the engine."""
    argv = oci.ps_json_argv(engine, {LABEL_NODE: str(node_id)})
    return oci.parse_ps_json(await engine_on(transport, argv, runtime=runtime, timeout=15))


def replica_of(container: oci.Listed) -> remote.RemoteReplica | None:
    """A listed container as the replica it runs (its main process by pid; no start time is
    needed for a container); None when it carries no replica label."""
    try:
        replica_id = uuid.UUID(container.labels.get(LABEL_REPLICA, ""))
    except ValueError:
        return None
    return remote.RemoteReplica(
        replica_id,
        container.labels.get(LABEL_RELEASE, "-"),
        container.labels.get(LABEL_VERSION, ""),
        container.pid,
        0.0,
    )


async def remove_on(
    transport: Transport,
    containers: list[str],
    *,
    engine: str,
    runtime: str | None,
    grace: float,
) -> None:
    """Stop and remove the node's `containers` in one engine process (SIGTERM, SIGKILL after
    `grace`)."""
    if containers:
        argv = oci.remove_many_argv(engine, sorted(containers), grace)
        await engine_on(transport, argv, runtime=runtime, timeout=grace + 30)


class ContainerDriver(ProcessDriver):
    """Rolling updates of OCI containers behind an optional router."""

    name = "container"
    config_model: ClassVar[type[HookConfig]] = ContainerConfig
    supervised: ClassVar[bool] = True

    def __init__(
        self,
        data_dir: Path,
        router: Router | None = None,
        *,
        engine: str = "podman",
        runtime: str | None = "runc",
        transports: TransportPool | None = None,
    ) -> None:
        super().__init__(data_dir, router, cgroups=False, transports=transports)
        self.engine = engine
        self.runtime = runtime
        self._stats = _Stats()
        # (service id, node id or None for this host) -> the image id resolved there
        self._image_ids: dict[tuple[str, uuid.UUID | None], str] = {}
        # the same key -> the node's preparation in the current rollout (image, orphans, volume)
        self._preparing: dict[tuple[str, uuid.UUID | None], asyncio.Future[str]] = {}
        self._owned: dict[str, list[ReplicaInfo]] = {}  # live replicas when the rollout began
        self._node_stats: dict[uuid.UUID, _Stats] = {}  # another node's last `stats`
        self._exits: dict[uuid.UUID, int] = {}  # replica id -> exit status seen on its node
        self._runs = 0  # `run`s of new replicas in progress on this host
        self._no_runs = asyncio.Event()  # set while there are none (removals wait for it)
        self._no_runs.set()

    # -- the engine ---------------------------------------------------------------------------

    def environ(self) -> dict[str, str]:
        """The engine's environment: ours plus CONTAINERS_CONF -> pilothouse's own file."""
        env = dict(os.environ)
        if os.path.basename(self.engine) == "podman":
            conf = self.data_dir / "containers" / "containers.conf"
            text = oci.containers_conf(runtime=self.runtime, nofile=NOFILE, nproc=NPROC)
            if not conf.exists() or conf.read_text() != text:
                conf.parent.mkdir(parents=True, exist_ok=True)
                conf.write_text(text)
            env["CONTAINERS_CONF"] = str(conf)
        return env

    def workdir(self) -> Path:
        """The engine's working directory here: pilothouse's own folder. conmon, which podman
        leaves beside each container, inherits it and writes an `oom` file there when the
        kernel kills the container; from wherever `serve` was started it landed in that folder
        (a checkout, a home directory)."""
        folder = self.data_dir / "containers"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def run(
        self,
        argv: list[str],
        *,
        timeout: float = 120,
        node: NodeAccess | None = None,
        input: bytes | None = None,
    ) -> str:
        """Run an engine command; its stdout, or EngineError with its last error line. On
        another `node` it goes through the node's transport (with `input` on its stdin).
        (Here: a thread with the stdlib's subprocess: under uvloop a detached `run` never closes
        the pipes of an asyncio subprocess, as the engine's monitor process inherits them.)"""
        if node is not None:
            return await self._run_on(node, argv, timeout=timeout, input=input)
        try:
            done = await asyncio.to_thread(
                subprocess.run,
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                env=self.environ(),
                cwd=self.workdir(),
                check=False,
            )
        except OSError as exc:
            raise EngineError(f"{argv[0]} could not run: {exc.strerror or exc}") from None
        except subprocess.TimeoutExpired:
            raise EngineError(f"{argv[0]} {argv[1]} timed out after {timeout:g}s") from None
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace")
            lines = [line for line in err.splitlines() if line.strip()]
            raise EngineError(lines[-1][:500] if lines else f"exit status {done.returncode}")
        return done.stdout.decode(errors="replace")

    async def _run_on(
        self, node: NodeAccess, argv: list[str], *, timeout: float, input: bytes | None
    ) -> str:
        """An engine command on another node (engine_on)."""
        return await engine_on(
            self.transports.get(node), argv, runtime=self.runtime, timeout=timeout, input=input
        )

    def run_sync(self, argv: list[str], *, timeout: float = 10) -> str | None:
        """A short engine query from synchronous code (exit reasons); None when it fails."""
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                timeout=timeout,
                env=self.environ(),
                cwd=self.workdir(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.decode(errors="replace") if done.returncode == 0 else None

    def _parse(self, config: dict[str, Any]) -> ContainerConfig:
        return ContainerConfig(**config)

    # -- images -------------------------------------------------------------------------------

    async def resolve_image(
        self, spec: ServiceSpec, cfg: ContainerConfig, node: NodeAccess | None = None
    ) -> tuple[str, str]:
        """(image id to run, digest to record) for the spec's image on this host or `node`;
        RolloutFailed when it is missing there or its digest is not the artifact's."""
        image = spec.image
        if not image:
            raise RolloutFailed(
                "the service has no image to run "
                "(set one: `pilothouse service update NAME --image ...`, or the artifact's "
                "image_uri)"
            )
        on = f" on node {node.name}" if node is not None else ""
        inspect = oci.image_inspect_argv(self.engine, image)
        try:
            found = await self.run(inspect, timeout=30, node=node)
        except EngineError:
            if cfg.pull == "never":
                raise RolloutFailed(f"image {image} is not present{on} (pull: never)") from None
            try:
                pull = oci.pull_argv(self.engine, image)
                await self.run(pull, timeout=cfg.start_timeout, node=node)
                found = await self.run(inspect, timeout=30, node=node)
            except EngineError as exc:
                raise RolloutFailed(f"image {image} could not be pulled{on}: {exc}") from None
        digests = oci.image_digests(found)
        data = json.loads(found)
        raw_id = str((data[0] if isinstance(data, list) else data).get("Id") or "")
        image_id = oci.normalise_digest(raw_id) if raw_id else image
        wanted = oci.normalise_digest(spec.image_digest) if spec.image_digest else None
        if wanted is not None and wanted not in digests:
            known = ", ".join(sorted(digests)) or "none"
            raise RolloutFailed(
                f"image {image}{on} has digest {known}, the artifact says {wanted}: refused "
                "(the image is not the one the artifact was built as)"
            )
        return image_id.removeprefix("sha256:"), wanted or image_id

    async def _before_rollout(
        self,
        spec: ServiceSpec,
        cfg: ProcessConfig,
        current: list[ReplicaInfo],
        events: Events,
    ) -> None:
        """Each node is prepared (image, orphans, volume) before its first replica of this
        rollout starts, once: where the replicas go is decided one at a time."""
        service = str(spec.service_id)
        self._owned[service] = list(current)
        for key in [k for k in (*self._preparing, *self._image_ids) if k[0] == service]:
            self._preparing.pop(key, None)
            self._image_ids.pop(key, None)

    async def _prepare(
        self, spec: ServiceSpec, cfg: ContainerConfig, node: NodeAccess | None, events: Events
    ) -> str:
        """The image id to run on this host (node None) or `node`, the node prepared on first
        use in the rollout (the replicas starting there meanwhile wait for it)."""
        key = (str(spec.service_id), node.id if node is not None else None)
        preparing = self._preparing.get(key)
        if preparing is None:
            preparing = asyncio.ensure_future(self._prepare_node(spec, cfg, node, events))
            self._preparing[key] = preparing
        return await asyncio.shield(preparing)

    async def _prepare_node(
        self, spec: ServiceSpec, cfg: ContainerConfig, node: NodeAccess | None, events: Events
    ) -> str:
        # Independent engine calls, side by side: the image check, the orphan clean-up and
        # the storage volume.
        owned = self._owned.get(str(spec.service_id), [])
        if node is None:
            resolved, _, storage = await asyncio.gather(
                self.resolve_image(spec, cfg),
                self.remove_orphans(spec.service_id, owned),
                self._volume(spec, cfg),
            )
        else:
            resolved, _ = await asyncio.gather(
                self.resolve_image(spec, cfg, node),
                self.remove_orphans(spec.service_id, owned, node=node),
            )
            # podman makes the named volume on first use; a size limit would need an image
            # file that pilothouse writes on the node's disk, which it never does.
            storage = (
                f"storage: volume {volume_name(spec)} on node {node.name} has no size limit "
                "(a sized volume is made on this host only); storage_gb is reserved on the "
                "node only"
                if cfg.data_path
                else None
            )
        image_id, digest = resolved
        self._image_ids[(str(spec.service_id), node.id if node is not None else None)] = image_id
        on = f" on node {node.name}" if node is not None else ""
        await events.log(f"image {spec.image}{on} is {digest}")
        if storage:
            await events.log(storage)
        return image_id

    async def _volume(self, spec: ServiceSpec, cfg: ContainerConfig) -> str | None:
        if not cfg.data_path:
            return None
        try:
            return await self.ensure_volume(spec, cfg)
        except (EngineError, OSError, subprocess.SubprocessError) as exc:
            raise RolloutFailed(f"storage volume {volume_name(spec)}: {exc}") from None

    async def ensure_volume(self, spec: ServiceSpec, cfg: ContainerConfig) -> str:
        """The service's storage volume, made when missing; what it is, for the deployment log.

        With `storage_gb`, podman as root and mkfs.ext4 at hand, the volume is backed by a
        sparse ext4 image of that size under `<data_dir>/volumes`, mounted through a loop device
        wherever the volume is used (podman's local driver runs mount(8)): a write past the size
        fails with "no space left on device". Otherwise it is a plain volume without a size
        limit, and the log line says why. The size is fixed when the volume is made."""
        name = volume_name(spec)
        image = self.data_dir / "volumes" / f"{name}.ext4"
        try:
            found: Any = json.loads(await self.run(oci.volume_inspect_argv(self.engine, name)))
            item = found[0] if isinstance(found, list) and found else {}
            device = str((item.get("Options") or {}).get("device") or "")
        except (EngineError, ValueError):
            item, device = None, ""
        if item is None:
            reason = None
            if spec.storage_gb:
                if not oci.is_podman(self.engine):
                    engine = os.path.basename(self.engine)
                    reason = f"{engine}'s local volume driver cannot mount an image file"
                elif os.geteuid() != 0:
                    reason = "a loop device needs root"
                else:
                    reason = await asyncio.to_thread(make_fs_image, image, spec.storage_gb)
            sized = bool(spec.storage_gb) and reason is None
            await self.run(
                oci.volume_create_argv(self.engine, name, device=str(image) if sized else None)
            )
            device = str(image) if sized else ""
            if reason:
                return (
                    f"storage: volume {name} has no size limit ({reason}); storage_gb is "
                    "reserved on the node only"
                )
        if not device:
            if spec.storage_gb:
                return (
                    f"storage: volume {name} has no size limit (it was made without one); "
                    "storage_gb is reserved on the node only"
                )
            return f"storage: volume {name} has no size limit (no storage_gb)"
        if not Path(device).exists():
            raise RolloutFailed(
                f"storage: the image {device} of volume {name} is missing, so the volume cannot "
                f"be mounted (`podman volume rm {name}` makes the next rollout start it anew)"
            )
        size_gb = round(Path(device).stat().st_size / 1024**3)
        if spec.storage_gb and spec.storage_gb != size_gb:
            return (
                f"storage: volume {name} holds at most {size_gb} GB (storage_gb is now "
                f"{spec.storage_gb}: a volume is not resized)"
            )
        return f"storage: volume {name} holds at most {size_gb} GB"

    async def remove_orphans(
        self, service_id: uuid.UUID, owned: list[ReplicaInfo], *, node: NodeAccess | None = None
    ) -> int:
        """Remove the service's labelled containers no live replica owns (a crash half-way
        through starting one) on this host or `node`; returns how many. One `ps` (ids and
        names: a replica's container is named after it) and at most one `rm` for all of them."""
        labels = {LABEL_SERVICE: str(service_id)}
        if node is not None:
            labels[LABEL_NODE] = str(node.id)
        try:
            listed = oci.parse_ps_names(
                await self.run(oci.ps_argv(self.engine, labels, names=True), node=node)
            )
        except EngineError:
            return 0
        keep = {container_name(r.id) for r in owned} | {r.container_id for r in owned}
        orphans = [cid for cid, name in listed.items() if name not in keep and cid not in keep]
        if orphans:
            with contextlib.suppress(EngineError):
                await self.run(oci.rm_argv(self.engine, *orphans), node=node)
        return len(orphans)

    # -- starting -----------------------------------------------------------------------------

    def _write_env_file(self, env: dict[str, str]) -> str:
        """A private temporary env-file (0600) in the data directory; the caller removes it."""
        text = oci.env_file_text(env)
        folder = self.data_dir / "tmp"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, path = tempfile.mkstemp(prefix="env-", dir=folder)
        try:
            os.fchmod(handle, 0o600)
            os.write(handle, text.encode())
        finally:
            os.close(handle)
        return path

    def _follow_logs(self, container_id: str, log_path: Path, secrets: list[str]) -> None:
        """`logs --follow` of the container into its log file, through the scrubbing relay
        when there are secrets; detached, so it outlives pilothouse (ends with the container)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out_fd = (
            _scrubbed_output(log_path, secrets)
            if secrets
            else os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        )
        try:
            subprocess.Popen(
                oci.logs_argv(self.engine, container_id, follow=True),
                stdout=out_fd,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environ(),
                cwd=self.workdir(),
                start_new_session=True,
            )
        finally:
            os.close(out_fd)

    async def _image_on(
        self, spec: ServiceSpec, cfg: ContainerConfig, node: NodeAccess | None
    ) -> str:
        """The image id resolved on this host or `node` by the rollout; resolved now when it
        was not (a replica restarted on a node the rollout did not use)."""
        key = (str(spec.service_id), node.id if node is not None else None)
        image_id = self._image_ids.get(key)
        if image_id is None:
            image_id, _ = await self.resolve_image(spec, cfg, node)
            self._image_ids[key] = image_id
        return image_id

    def _ulimits(self) -> tuple[str, ...]:
        """What pilothouse's containers.conf sets here, as `--ulimit`s for another node."""
        if not oci.is_podman(self.engine):
            return ()
        return (f"nofile={NOFILE}:{NOFILE}", f"nproc={NPROC}:{NPROC}")

    async def start_remote(
        self,
        spec: ServiceSpec,
        cfg: ContainerConfig,
        replica_id: uuid.UUID,
        node: NodeAccess,
        *,
        log_path: Path,
    ) -> Started:
        """`run --detach` one replica on another node through its transport: the variables as
        an env-file on the engine's stdin (`--env-file /dev/stdin`: never on the node's disk
        or a command line), the port published on the node's address (the engine picks it;
        one `inspect` reads it back with the main process). EngineError when the engine
        refuses or the node does not answer; ValueError when a variable cannot go into an
        env-file."""
        if cfg.network == "host":
            raise EngineError(
                "network: host is not supported on another node (its free ports are not known "
                "here); use bridge"
            )
        image_id = await self._image_on(spec, cfg, node)
        inside = cfg.container_port
        env = {**spec.env, **cfg.env, "PILOTHOUSE_VERSION": spec.version, "PORT": str(inside)}
        env_text = oci.env_file_text(env).encode()
        command = (
            shlex.split(render_command(spec.command, port=inside, version=spec.version))
            if spec.command
            else []
        )
        name = container_name(replica_id)
        run = run_spec(
            spec,
            cfg,
            replica_id,
            image=image_id,
            command=command,
            labels={
                LABEL_NODE: str(node.id),
                LABEL_RELEASE: str(spec.release_id) if spec.release_id else "-",
            },
            host_port=None,
            container_port=inside,
            env_file="/dev/stdin",
            publish_address=node.address,
            ulimits=self._ulimits(),
        )
        out = await self._run_fresh(run, timeout=cfg.start_timeout, node=node, input=env_text)
        container_id = out.strip().splitlines()[-1] if out.strip() else name
        try:
            state = oci.container_state(
                await self.run(oci.inspect_argv(self.engine, container_id), node=node)
            )
        except (ValueError, KeyError, IndexError):
            raise EngineError(f"on node {node.name}: the container cannot be inspected") from None
        port = state.host_ports.get(inside)
        if not port:
            raise EngineError(f"on node {node.name}: the container published no port")
        return Started(state.id or container_id, state.pid or 0, state.started_at, port, log_path)

    async def _run_fresh(
        self,
        run: oci.RunSpec,
        *,
        timeout: float,
        node: NodeAccess | None = None,
        input: bytes | None = None,
    ) -> str:
        """`run` the container; when its name is taken (a container of an earlier start of this
        replica that was never recorded), remove that one and run again, once."""
        argv = oci.run_argv(self.engine, run)
        try:
            return await self.run(argv, timeout=timeout, node=node, input=input)
        except EngineError as exc:
            if "already in use" not in str(exc):
                raise
        await self.run(oci.rm_argv(self.engine, run.name), node=node)
        return await self.run(argv, timeout=timeout, node=node, input=input)

    async def start_container(
        self,
        spec: ServiceSpec,
        cfg: ContainerConfig,
        replica_id: uuid.UUID,
        *,
        log_path: Path,
    ) -> Started:
        """`run --detach` one replica and follow its output; its id and host port (the main
        process is read by `main_process`). EngineError when the engine refuses; ValueError
        when a variable cannot go into an env-file."""
        image_id = await self._image_on(spec, cfg, None)
        host_port = free_port()
        inside = host_port if cfg.network == "host" else cfg.container_port
        env = {**spec.env, **cfg.env, "PILOTHOUSE_VERSION": spec.version, "PORT": str(inside)}
        command = (
            shlex.split(render_command(spec.command, port=inside, version=spec.version))
            if spec.command
            else []
        )
        env_file = self._write_env_file(env)
        try:
            run = run_spec(
                spec,
                cfg,
                replica_id,
                image=image_id,
                command=command,
                host_port=host_port,
                container_port=cfg.container_port,
                env_file=env_file,
                network=cfg.network,
            )
            self._runs += 1
            self._no_runs.clear()
            try:
                out = await self._run_fresh(run, timeout=cfg.start_timeout)
            finally:
                self._runs -= 1
                if not self._runs:
                    self._no_runs.set()
            container_id = out.strip().splitlines()[-1] if out.strip() else ""
        finally:
            with contextlib.suppress(OSError):
                os.unlink(env_file)
        self._follow_logs(container_id, log_path, spec.secrets)
        return Started(container_id, 0, 0.0, host_port, log_path)

    async def main_process(self, container_id: str) -> tuple[int, float]:
        """(pid, start time) of the container's main process; (0, 0.0) when it is not
        running (or the engine cannot say)."""
        try:
            state = oci.container_state(await self.run(oci.inspect_argv(self.engine, container_id)))
        except (EngineError, ValueError, KeyError, IndexError):
            return 0, 0.0
        started_at = 0.0
        if state.pid:
            with contextlib.suppress(psutil.Error):
                started_at = psutil.Process(state.pid).create_time()
        return (state.pid or 0), started_at

    async def _start_one(
        self, spec: ServiceSpec, cfg: ProcessConfig, ready: ReadinessSpec, events: Events
    ) -> ReplicaInfo:
        assert isinstance(cfg, ContainerConfig)
        access = await self._place(events)
        where = access if access is not None and access.kind != "local" else None
        await self._prepare(spec, cfg, where, events)
        placed = {"node_id": access.id} if access is not None else {}
        replica_id = await events.replica_created(spec.version, port=None, log_path=None, **placed)
        log_path = self._log_path(spec, replica_id)
        if where is not None:
            started, result = await self._launch_remote_container(
                spec, cfg, ready, events, replica_id, where, log_path=log_path, reason=None
            )
        else:
            started, result = await self._launch_container(
                spec, cfg, ready, events, replica_id, log_path=log_path, reason=None, tail=True
            )
        if started is None:
            await events.replica_changed(replica_id, "failed", log_path=str(log_path))
            raise RolloutFailed(f"could not start container: {result}")
        if not isinstance(result, str) and not result.ready:
            await events.replica_changed(
                replica_id, "failed", exit_code=result.exit_code, keep_running=False
            )
            raise RolloutFailed(f"container on port {started.port} {result.detail}")
        await events.replica_changed(replica_id, "running", keep_running=True, health="healthy")
        seconds = 0.0 if isinstance(result, str) else result.seconds
        on = f" of node {where.name} ({where.address})" if where is not None else ""
        await events.log(
            f"replica {str(replica_id)[:8]} (container {started.container_id[:12]}) ready on "
            f"port {started.port}{on} in {seconds:.2f}s"
        )
        return self._info(
            replica_id, spec.version, started, access.id if access is not None else None
        )

    def _info(
        self,
        replica_id: uuid.UUID,
        version: str,
        started: Started,
        node_id: uuid.UUID | None = None,
    ) -> ReplicaInfo:
        return ReplicaInfo(
            replica_id,
            version,
            started.pid,
            started.started_at,
            started.port,
            str(started.log_path),
            container_id=started.container_id,
            node_id=node_id,
        )

    async def _launch_remote_container(
        self,
        spec: ServiceSpec,
        cfg: ContainerConfig,
        ready: ReadinessSpec,
        events: Events,
        replica_id: uuid.UUID,
        node: NodeAccess,
        *,
        log_path: Path,
        reason: str | None,
        tail: bool = True,
    ) -> tuple[Started | None, Any]:
        """Start the container on `node` (recorded as `starting`), relay its scrubbed output
        (`logs --follow` through the transport) to log_path, wait for readiness at the node's
        address. (None, error text) when it could not start; else (started, ReadyResult)."""
        begun = time.monotonic()
        self._launched[replica_id] = math.inf  # listings from before the start prove nothing
        try:
            started = await self.start_remote(spec, cfg, replica_id, node, log_path=log_path)
        except (EngineError, ValueError) as exc:
            self._launched.pop(replica_id, None)
            return None, str(exc)
        self._launched[replica_id] = time.monotonic()
        start_seconds = time.monotonic() - begun
        relay: remote.Relay | None = None
        follow = oci.merged_output(oci.logs_argv(self.engine, started.container_id, follow=True))
        with contextlib.suppress(TransportUnavailable, OSError):
            channel = await self.transports.get(node).start(follow)
            # No marker: no shim here, every line is the container's output (none of them
            # counts as the replica's end; the listing tells).
            relay = remote.Relay(channel, log_path, spec.secrets).begin()
        previous = self._relays.pop(replica_id, None)
        if previous is not None:
            self._drop(previous)
        if relay is not None:
            self._relays[replica_id] = relay
        self._watch(node.id)
        digest = oci.normalise_digest(spec.image_digest) if spec.image_digest else None
        image_id = self._image_ids.get((str(spec.service_id), node.id), "")
        await events.replica_changed(
            replica_id,
            "starting",
            reason=reason,
            pid=started.pid,
            process_started_at=started.started_at,
            container_id=started.container_id,
            image_digest=digest or f"sha256:{image_id}"[:71],
            ports={"http": started.port},
            log_path=str(log_path),
            enforcement="cgroup",
            memory_over_since=None,
            node_id=node.id,
        )

        def running() -> bool:
            """`logs --follow` ends with the container (or the connection)."""
            return relay is None or relay.task is None or not relay.task.done()

        async def stop() -> int | None:
            code = await self.stop_container(started.container_id, cfg.grace_seconds, node=node)
            self._let_relay_go(replica_id)
            return code

        result = await ready_or_stopped(
            ready,
            node.address,
            started.port,
            alive=running,
            stop=stop,
            output=(log_path, events, replica_id) if tail else None,
        )
        result.seconds += start_seconds
        return started, result

    def _let_relay_go(self, replica_id: uuid.UUID) -> None:
        relay = self._relays.pop(replica_id, None)
        if relay is not None:
            self._drop(relay)

    async def _launch_container(
        self,
        spec: ServiceSpec,
        cfg: ContainerConfig,
        ready: ReadinessSpec,
        events: Events,
        replica_id: uuid.UUID,
        *,
        log_path: Path,
        reason: str | None,
        tail: bool,
        node_id: uuid.UUID | None = None,
    ) -> tuple[Started | None, Any]:
        """Start the container (recorded as `starting`) and wait for readiness. (None, error
        text) when the engine refused it; else (started, ReadyResult)."""
        begun = time.monotonic()
        try:
            started = await self.start_container(spec, cfg, replica_id, log_path=log_path)
        except (EngineError, ValueError) as exc:
            return None, str(exc)
        start_seconds = time.monotonic() - begun
        digest = oci.normalise_digest(spec.image_digest) if spec.image_digest else None

        async def record_starting() -> None:
            """Read the main process (one `inspect`, while readiness is already polled) and
            record the replica as starting with it."""
            started.pid, started.started_at = await self.main_process(started.container_id)
            await events.replica_changed(
                replica_id,
                "starting",
                reason=reason,
                pid=started.pid,
                process_started_at=started.started_at,
                container_id=started.container_id,
                image_digest=digest
                or f"sha256:{self._image_ids.get((str(spec.service_id), None), '')}"[:71],
                ports={"http": started.port},
                log_path=str(log_path),
                enforcement="cgroup",
                memory_over_since=None,
                **({"node_id": node_id} if node_id is not None else {}),
            )

        recording = asyncio.create_task(record_starting())

        stopped: list[bool] = []

        async def stop() -> int | None:
            # `starting` is in (or failed to be) before `failed`; stopped either way (a store
            # failure is raised below, once the container is stopped).
            with contextlib.suppress(Exception):
                await asyncio.shield(recording)
            stopped.append(True)
            return await self.stop_container(started.container_id, cfg.grace_seconds)

        async def unrecorded() -> bool:
            """Whether `starting` failed to be written; then the container is stopped: with
            no record it would run where the store does not look."""
            with contextlib.suppress(Exception):
                await asyncio.shield(recording)
            if recording.cancelled() or recording.exception() is not None:
                if not stopped:
                    stopping = self.stop_container(started.container_id, cfg.grace_seconds)
                    await asyncio.shield(stopping)
                return True
            return False

        try:
            result = await ready_or_stopped(
                ready,
                "127.0.0.1",
                started.port,
                # Alive until the main process is known; then that process tells.
                alive=lambda: not recording.done() or is_alive(started.pid, started.started_at),
                stop=stop,
                output=(log_path, events, replica_id) if tail else None,
            )
        except BaseException:
            # `starting` is recorded (or failed to be) first; the wait's own end (a
            # cancellation above all) is what is raised.
            await unrecorded()
            raise
        if await unrecorded():
            await recording  # raises the store's failure
        # Readiness counts from the start request: `run` is what spawning is for a process.
        result.seconds += start_seconds
        return started, result

    # -- stopping -----------------------------------------------------------------------------

    async def stop_container(
        self, container: str | None, grace: float, *, node: NodeAccess | None = None
    ) -> int | None:
        """Stop (SIGTERM, SIGKILL after grace) and remove, on this host or `node`; the exit
        code when known."""
        if not container:
            return None
        with contextlib.suppress(EngineError):
            stop = oci.stop_argv(self.engine, container, grace)
            await self.run(stop, timeout=grace + 30, node=node)
        code = None
        with contextlib.suppress(EngineError, ValueError, KeyError, IndexError):
            code = oci.container_state(
                await self.run(oci.inspect_argv(self.engine, container), node=node)
            ).exit_code
        with contextlib.suppress(EngineError):
            await self.run(oci.rm_argv(self.engine, container), node=node)
        return code

    async def remove_container(
        self, container: str | None, grace: float, *, node: NodeAccess | None = None
    ) -> None:
        """Stop (SIGTERM, SIGKILL after grace) and remove in as few engine calls as the engine
        allows (podman: one), on this host or `node` (one that does not answer keeps it: the
        fencing of a returning node removes it). The exit code is not read: a retired replica
        records none."""
        if not container:
            return
        for argv in oci.remove_argvs(self.engine, container, grace):
            with contextlib.suppress(EngineError):
                await self.run(argv, timeout=grace + 30, node=node)

    async def _runs_done(self, timeout: float) -> None:
        """Return once no `run` of a new replica is in progress on this host, or after
        `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_runs.wait(), timeout)

    async def _retire(
        self,
        replica: ReplicaInfo,
        cfg: ProcessConfig,
        events: Events,
        marked: asyncio.Event | None = None,
    ) -> None:
        """Stop and remove a container that has already left the router, once recorded
        `stopping` (then `marked` is set); it is removed even when `stopping` cannot be
        recorded (the store gone: that error is raised after)."""
        try:
            await events.replica_changed(replica.id, "stopping", keep_running=False)
        finally:
            if marked is not None:
                marked.set()
            if cfg.drain_seconds:
                await asyncio.sleep(cfg.drain_seconds)
            node = self._remote(replica)
            if node is None:
                # A removal and a `run` side by side slow each other down (podman's storage
                # and network locks, the CPU): the replica is out of the router already, so
                # its removal waits for the `run` of a replica starting here
                # (bench/containers.py: a `run` took 0.8-1.5 s beside an `rm`, 0.35-0.5 s
                # alone), at most RUN_WAIT s.
                await self._runs_done(RUN_WAIT)
            await self.remove_container(replica.container_id, cfg.grace_seconds, node=node)
            if node is not None:
                self._let_relay_go(replica.id)
        await events.replica_changed(replica.id, "stopped")

    async def stop(self, replicas: list[ReplicaInfo], events: Events) -> None:
        cfg = ContainerConfig()
        await asyncio.gather(*(self._retire(r, cfg, events) for r in replicas))

    async def terminate(self, replica: ReplicaInfo, grace: float) -> int | None:
        node = self._remote(replica)
        code = await self.stop_container(replica.container_id, grace, node=node)
        if node is not None:
            self._let_relay_go(replica.id)
        return code

    # -- supervision --------------------------------------------------------------------------

    def exit_reason(self, replica: ReplicaInfo) -> str | None:
        """`memory: OOM-killed ...` when the engine says the kernel killed the container. On
        another node: its exit status from the node's last listing (no engine call here)."""
        if not replica.container_id:
            return None
        if self._remote(replica) is not None:
            code = self._exits.get(replica.id)
            return f"container exited with status {code}" if code is not None else None
        found = self.run_sync(oci.inspect_argv(self.engine, replica.container_id))
        if found is None:
            return None
        try:
            state = oci.container_state(found)
        except (ValueError, KeyError, IndexError):
            return None
        if state.oom_killed or (
            state.exit_code == 137
            and oci.oom_in_kernel_log(kernel_log(), state.id or replica.container_id, replica.pid)
        ):
            return "memory: OOM-killed by the kernel at its memory_mb limit (container)"
        if state.exit_code is not None and not state.running:
            return f"container exited with status {state.exit_code}"
        return None

    async def restart(self, spec: ServiceSpec, replica: ReplicaInfo, events: Events) -> ReplicaInfo:
        """The crashed replica again: same id and version, a new container, a fresh port; on
        its node when that one is ready, else on a placed one."""
        cfg = self._parse(spec.config)
        log_path = Path(replica.log_path) if replica.log_path else self._log_path(spec, replica.id)
        old = self._remote(replica)
        await self.remove_container(replica.container_id, 0, node=old)  # the dead one
        if old is not None:
            self._let_relay_go(replica.id)
            self._exits.pop(replica.id, None)
        access = await self._place(events, prefer=replica.node_id)
        where = access if access is not None and access.kind != "local" else None
        ready = ReadinessSpec(**spec.health_check)
        reason = "restart after crash"
        if where is not None:
            started, result = await self._launch_remote_container(
                spec,
                cfg,
                ready,
                events,
                replica.id,
                where,
                log_path=log_path,
                reason=reason,
                tail=False,
            )
        else:
            started, result = await self._launch_container(
                spec,
                cfg,
                ready,
                events,
                replica.id,
                log_path=log_path,
                reason=reason,
                tail=False,
                node_id=access.id if access is not None else None,
            )
        if started is None:
            raise RolloutFailed(f"could not start container: {result}")
        if not result.ready:
            raise RolloutFailed(result.detail)
        node_id = access.id if access is not None else replica.node_id
        return self._info(replica.id, spec.version, started, node_id)

    def sample(self, replica: ReplicaInfo) -> Sample | None:
        """CPU and memory from the engine's `stats` (refreshed in the background, at most
        every STATS_TTL seconds); None when the container is not running or not yet seen. On
        another node: from the node's listing (drivers/process.py's poller)."""
        node = self._remote(replica)
        if node is not None:
            self._watch(node.id)
            seen = self._seen(replica, node)
            return Sample(seen.cpu_percent, seen.memory_mb) if seen is not None else None
        if not replica.container_id or not self.alive(replica):
            return None
        stats = self._stats
        stale = time.monotonic() - stats.at > STATS_TTL
        if stale and (stats.refreshing is None or stats.refreshing.done()):
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to refresh
                stats.refreshing = asyncio.get_running_loop().create_task(self._refresh_stats())
        line = stats.figures.get(replica.container_id[:12]) or stats.figures.get(
            replica.container_id
        )
        return Sample(line.cpu_percent, line.memory_mb) if line else None

    async def _refresh_stats(self) -> None:
        """One `stats` of every running container (the engine's default: no `ps` first);
        replicas pick theirs by id."""
        try:
            text = await self.run(oci.stats_argv(self.engine, []))
        except EngineError:
            return
        figures: dict[str, oci.StatsLine] = {}
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                parsed = oci.parse_stats_line(line)
                figures[parsed.container[:12]] = parsed
        self._stats.figures = figures
        self._stats.at = time.monotonic()

    # -- other nodes: one listing per node per poll -----------------------------------------------

    async def refresh(self, node_id: uuid.UUID) -> None:
        """List the node's pilothouse containers now (one `ps`, and one `stats` of the running
        ones at most every STATS_TTL seconds). A node that does not answer keeps its last
        listing, marked failed: that is not evidence its replicas died."""
        node = self.transports.remote(node_id)
        if node is None:
            return
        began = time.monotonic()
        try:
            listed = await containers_on(
                self.transports.get(node), node_id, engine=self.engine, runtime=self.runtime
            )
        except (EngineError, ValueError):
            self._listings.setdefault(node_id, Listing()).ok = False
            return
        running = [c for c in listed if c.running]
        figures = await self._stats_on(node, [c.id for c in running])
        found: dict[uuid.UUID, remote.RemoteReplica] = {}
        for container in listed:
            try:
                replica_id = uuid.UUID(container.labels.get(LABEL_REPLICA, ""))
            except ValueError:
                continue
            if not container.running:
                if container.exit_code is not None:
                    self._exits[replica_id] = container.exit_code
                continue
            line = figures.get(container.id[:12])
            found[replica_id] = remote.RemoteReplica(
                replica_id,
                container.labels.get(LABEL_RELEASE, "-"),
                container.labels.get(LABEL_VERSION, ""),
                container.pid,
                0.0,
                line.cpu_percent if line else 0.0,
                line.memory_mb if line else 0.0,
            )
        self._listings[node_id] = Listing(began, True, found)

    async def _stats_on(self, node: NodeAccess, running: list[str]) -> dict[str, oci.StatsLine]:
        """CPU and memory of the node's running containers by short id (one `stats` of them
        all, reused for STATS_TTL seconds; the last figures when it fails)."""
        stats = self._node_stats.setdefault(node.id, _Stats())
        if not running or time.monotonic() - stats.at <= STATS_TTL:
            return stats.figures
        try:
            text = await self.run(oci.stats_argv(self.engine, running), node=node, timeout=30)
        except EngineError:
            return stats.figures
        figures: dict[str, oci.StatsLine] = {}
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                parsed = oci.parse_stats_line(line)
                figures[parsed.container[:12]] = parsed
        stats.figures, stats.at = figures, time.monotonic()
        return figures

    async def fence(
        self, node: NodeAccess, keep: set[uuid.UUID], *, grace: float = 10.0
    ) -> list[uuid.UUID]:
        """Remove every pilothouse container on `node` whose replica is not in `keep`: one `ps`
        by the node's label, one `rm` of them all (containers_on, remove_on); returns the
        replica ids removed. EngineError when the node does not answer."""
        transport = self.transports.get(node)
        listed = await containers_on(transport, node.id, engine=self.engine, runtime=self.runtime)
        strays: dict[str, uuid.UUID] = {}
        for container in listed:
            found = replica_of(container)
            if found is not None and found.replica_id not in keep:
                strays[container.id] = found.replica_id
        await remove_on(
            transport, list(strays), engine=self.engine, runtime=self.runtime, grace=grace
        )
        return sorted(set(strays.values()))

    def _seen(self, replica: ReplicaInfo, access: NodeAccess) -> remote.RemoteReplica | None:
        """The replica in its node's last listing, by id and main process (a container is
        known by its pid there; its start time is not needed)."""
        listing = self._listings.get(access.id)
        found = listing.replicas.get(replica.id) if listing is not None else None
        return found if found is not None and found.pid == replica.pid else None

    async def status(self, replicas: list[ReplicaInfo]) -> dict[uuid.UUID, dict[str, Any]]:
        nodes = {a.id for r in replicas if (a := self._remote(r)) is not None}
        here = any(self._remote(r) is None for r in replicas)
        await asyncio.gather(
            *(self.refresh(n) for n in nodes), *([self._refresh_stats()] if here else [])
        )
        out: dict[uuid.UUID, dict[str, Any]] = {}
        for replica in replicas:
            figures = self.sample(replica)
            out[replica.id] = {
                "alive": self.alive(replica),
                "container_id": replica.container_id,
                **(
                    {"cpu_percent": figures.cpu_percent, "memory_mb": figures.memory_mb}
                    if figures
                    else {}
                ),
            }
        return out
