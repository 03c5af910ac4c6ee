"""Engine-neutral command lines for OCI container engines (podman and the docker CLI). Pure.

Every function returns the exact argument list to run; the container driver (drivers/
container.py) runs them. Only options both engines accept are used, so the same list works
with `podman` and `docker` as argv[0]:

- `run_argv`: detached, labelled, `--cpus`, `--memory` (with `--memory-swap` equal to it, so
  no swap hides an overrun), a volume for the service's storage, one CDI `--device` per GPU,
  variables from an `--env-file` (never a value on the command line), host port published on
  127.0.0.1 (or host networking).
- `stop_argv` (SIGTERM, SIGKILL after the grace seconds), `rm_argv`, `inspect_argv`,
  `image_inspect_argv`, `pull_argv`, `ps_argv` (by label, for adoption), `stats_argv` and
  `logs_argv`.
- `remove_argvs`: stop with a grace and remove in as few engine processes as the engine allows
  (podman: one `rm --force --time`; docker's `rm --force` has no grace: `stop`, then `rm`).
- `volume_create_argv`: a named volume, optionally backed by a file system image mounted
  through a loop device (the size limit of a service's storage).

Parsing the engines' answers is pure too: `parse_stats_line`, `image_digests`, `container_state`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Network = Literal["host", "bridge"]
LABEL_PREFIX = "pilothouse."
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: Variable names an env-file can carry (one `NAME=value` line each).
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STATS_FORMAT = "{{.ID}}\t{{.CPUPerc}}\t{{.MemUsage}}"


@dataclass(frozen=True)
class RunSpec:
    """One container to start: what `run_argv` turns into a command line."""

    name: str
    image: str
    labels: Mapping[str, str]
    host_port: int | None  # None: the engine picks a free one (read back with inspect)
    container_port: int
    env_file: str | None = None  # "/dev/stdin": the variables come on the engine's stdin
    cpus: float | None = None
    memory_mb: float | None = None
    volume: str | None = None  # a named volume mounted at `volume_target`
    volume_target: str = "/data"
    gpus: int = 0
    gpu_device: str = "nvidia.com/gpu"  # CDI kind; device i is `<kind>=<i>`
    network: Network = "bridge"
    command: Sequence[str] = ()
    publish_address: str = "127.0.0.1"  # where the host port listens (a node's address)
    ulimits: Sequence[str] = ()  # `--ulimit` values (another node: no containers.conf there)


def cpus_text(cpus: float) -> str:
    """`--cpus` as both engines read it: a decimal without float noise (1.5, 0.25, 2)."""
    text = f"{cpus:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def memory_text(memory_mb: float) -> str:
    """`--memory` in whole mebibytes with the `m` suffix (both engines' unit)."""
    return f"{max(6, math.ceil(memory_mb))}m"


def run_argv(engine: str, spec: RunSpec) -> list[str]:
    """`<engine> run --detach ...` for one replica."""
    argv = [engine, "run", "--detach", "--name", spec.name]
    for key in sorted(spec.labels):
        argv += ["--label", f"{key}={spec.labels[key]}"]
    if spec.network == "host":
        argv += ["--network", "host"]
    else:
        host_port = "" if spec.host_port is None else str(spec.host_port)
        argv += ["--publish", f"{spec.publish_address}:{host_port}:{spec.container_port}"]
    if spec.cpus:
        argv += ["--cpus", cpus_text(spec.cpus)]
    if spec.memory_mb:
        argv += ["--memory", memory_text(spec.memory_mb)]
        argv += ["--memory-swap", memory_text(spec.memory_mb)]
    if spec.volume:
        argv += ["--volume", f"{spec.volume}:{spec.volume_target}"]
    for index in range(spec.gpus):
        argv += ["--device", f"{spec.gpu_device}={index}"]
    for ulimit in spec.ulimits:
        argv += ["--ulimit", ulimit]
    if spec.env_file:
        argv += ["--env-file", spec.env_file]
    argv.append(spec.image)
    argv += list(spec.command)
    return argv


def stop_argv(engine: str, container: str, grace: float) -> list[str]:
    """SIGTERM, then SIGKILL after `grace` whole seconds (rounded up; both engines take an
    integer)."""
    return [engine, "stop", "--time", str(max(0, math.ceil(grace))), container]


def rm_argv(engine: str, container: str, *more: str) -> list[str]:
    return [engine, "rm", "--force", container, *more]


def is_podman(engine: str) -> bool:
    return os.path.basename(engine) == "podman"


def remove_argvs(engine: str, container: str, grace: float) -> list[list[str]]:
    """The commands that stop a container (SIGTERM, SIGKILL after `grace` seconds) and remove
    it, run one after the other: podman does both in one process (`rm --force --time`);
    docker's `rm --force` kills at once, so it is `stop --time`, then `rm`."""
    if is_podman(engine):
        return [[engine, "rm", "--force", "--time", str(max(0, math.ceil(grace))), container]]
    return [stop_argv(engine, container, grace), rm_argv(engine, container)]


def remove_many_argv(engine: str, containers: Sequence[str], grace: float) -> list[str]:
    """Stop and remove many containers in one engine process (podman: SIGTERM, SIGKILL after
    `grace`; docker's `rm --force` kills at once)."""
    if is_podman(engine):
        return [engine, "rm", "--force", "--time", str(max(0, math.ceil(grace))), *containers]
    return [engine, "rm", "--force", *containers]


def inspect_argv(engine: str, container: str, *more: str) -> list[str]:
    """The containers' JSON (an array, one element per container, in both engines)."""
    return [engine, "container", "inspect", container, *more]


def image_inspect_argv(engine: str, image: str) -> list[str]:
    return [engine, "image", "inspect", image]


def pull_argv(engine: str, image: str) -> list[str]:
    return [engine, "pull", "--quiet", image]


def ps_argv(engine: str, labels: Mapping[str, str], *, names: bool = False) -> list[str]:
    """Ids of every container (running or not) carrying all of `labels`; with `names`, one
    `<id> <name>` line each (parse with parse_ps_names)."""
    fmt = "{{.ID}} {{.Names}}" if names else "{{.ID}}"
    argv = [engine, "ps", "--all", "--no-trunc", "--format", fmt]
    for key in sorted(labels):
        argv += ["--filter", f"label={key}={labels[key]}"]
    return argv


def with_globals(argv: Sequence[str], runtime: str | None) -> list[str]:
    """`argv` with podman's global `--runtime` after the program (another node, where no
    containers.conf of pilothouse's is written); other engines' argv as it is."""
    if not runtime or not argv or not is_podman(argv[0]):
        return list(argv)
    return [argv[0], "--runtime", runtime, *argv[1:]]


def merged_output(argv: Sequence[str]) -> list[str]:
    """`argv` run by `sh` with its stderr into its stdout (a transport's long-running command
    relays stdout only; `logs` writes the container's stderr to its own stderr)."""
    return ["sh", "-c", 'exec "$@" 2>&1', "sh", *argv]


def ps_json_argv(engine: str, labels: Mapping[str, str]) -> list[str]:
    """Every container (running or not) carrying all of `labels`, as JSON (parse_ps_json)."""
    argv = [engine, "ps", "--all", "--no-trunc", "--format", "json"]
    for key in sorted(labels):
        argv += ["--filter", f"label={key}={labels[key]}"]
    return argv


@dataclass(frozen=True)
class Listed:
    """One container of a `ps_json_argv` answer."""

    id: str
    running: bool
    exit_code: int | None
    pid: int
    labels: dict[str, str]


def parse_ps_json(output: str) -> list[Listed]:
    """`ps_json_argv` output (podman: one JSON array) -> the containers; rows it cannot read
    are left out."""
    text = output.strip()
    data: Any = json.loads(text) if text else []
    found = []
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict) or not (item.get("Id") or item.get("ID")):
            continue
        labels = item.get("Labels") or {}
        state = str(item.get("State") or "").lower()
        exited = bool(item.get("Exited")) or state in ("exited", "stopped")
        code = item.get("ExitCode")
        found.append(
            Listed(
                id=str(item.get("Id") or item.get("ID")),
                running=state == "running",
                exit_code=code if isinstance(code, int) and exited else None,
                pid=int(item.get("Pid") or 0),
                labels={str(k): str(v) for k, v in labels.items()}
                if isinstance(labels, dict)
                else {},
            )
        )
    return found


def parse_ps_names(output: str) -> dict[str, str]:
    """`ps_argv(..., names=True)` output -> {container id: name}."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            found[parts[0]] = parts[1]
    return found


def volume_inspect_argv(engine: str, name: str) -> list[str]:
    return [engine, "volume", "inspect", name]


def volume_create_argv(
    engine: str, name: str, *, device: str | None = None, fstype: str = "ext4"
) -> list[str]:
    """`volume create NAME`; with `device` (a file system image file), the local driver
    mounts that image through a loop device (`-o loop`) wherever the volume is used, so the
    volume holds at most the image's size."""
    argv = [engine, "volume", "create"]
    if device:
        argv += ["--opt", f"type={fstype}", "--opt", f"device={device}", "--opt", "o=loop"]
    return [*argv, name]


def stats_argv(engine: str, containers: Sequence[str]) -> list[str]:
    """One line per container (no containers: every running one): id, CPU percent, memory
    usage (parse with parse_stats_line)."""
    return [engine, "stats", "--no-stream", "--format", STATS_FORMAT, *containers]


def logs_argv(engine: str, container: str, *, follow: bool) -> list[str]:
    return [engine, "logs", *(["--follow"] if follow else []), container]


def env_file_text(env: Mapping[str, str]) -> str:
    """The env-file for `--env-file`: `NAME=value` lines. A value with a line break cannot be
    carried by the format (both engines read one line per variable): ValueError naming the
    variable, never the value."""
    lines = []
    for name in sorted(env):
        if not ENV_NAME_RE.match(name):
            raise ValueError(f"variable {name!r} is not a valid name for a container")
        value = env[name]
        if "\n" in value or "\r" in value or "\0" in value:
            raise ValueError(f"variable {name} has a line break, which an env-file cannot carry")
        lines.append(f"{name}={value}\n")
    return "".join(lines)


_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def size_mb(text: str) -> float:
    """'10.5MB', '1.2GiB', '512kB', '0B' -> mebibytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    unit = match.group(2).lower() or "b"
    if unit not in _UNITS:
        raise ValueError(f"unknown unit in {text!r}")
    return float(match.group(1)) * _UNITS[unit] / (1024 * 1024)


@dataclass(frozen=True)
class StatsLine:
    container: str
    cpu_percent: float
    memory_mb: float


def parse_stats_line(line: str) -> StatsLine:
    """One line of `stats_argv` output: `id<TAB>12.5%<TAB>10.2MB / 512MB`."""
    parts = line.strip().split("\t")
    if len(parts) != 3:
        raise ValueError(f"unexpected stats line: {line!r}")
    container, cpu, memory = parts
    cpu_value = float(cpu.strip().rstrip("%") or 0) if cpu.strip() not in ("--", "") else 0.0
    used = memory.split("/")[0]
    return StatsLine(container.strip(), cpu_value, size_mb(used) if used.strip() != "--" else 0.0)


def normalise_digest(value: str) -> str:
    """`sha256:<hex>` from `sha256:<hex>`, a bare 64-hex id, or `name@sha256:<hex>`."""
    value = value.strip().lower().rsplit("@", 1)[-1]
    if re.fullmatch(r"[0-9a-f]{64}", value):
        value = "sha256:" + value
    return value


def image_digests(inspect_output: str) -> set[str]:
    """The content digests an image is known by: its id (config digest), its manifest digest
    (podman's `Digest`) and its repository digests. The artifact's digest must be one of them."""
    data: Any = json.loads(inspect_output)
    items = data if isinstance(data, list) else [data]
    found: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        for key in ("Id", "ID", "Digest"):
            value = item.get(key)
            if isinstance(value, str) and value:
                found.add(normalise_digest(value))
        for ref in item.get("RepoDigests") or []:
            if isinstance(ref, str):
                found.add(normalise_digest(ref))
    return {d for d in found if DIGEST_RE.match(d)}


@dataclass(frozen=True)
class ContainerState:
    """What `inspect_argv` says about a container's life."""

    id: str
    running: bool
    status: str
    exit_code: int | None
    oom_killed: bool
    pid: int | None
    labels: dict[str, str]
    image_id: str | None
    host_ports: dict[int, int] = field(default_factory=dict)  # container port -> host port
    started_at: float = 0.0  # when its main process started (epoch seconds; 0: not known)


def container_states(inspect_output: str) -> list[ContainerState]:
    """Every container of an `inspect_argv` answer."""
    data: Any = json.loads(inspect_output)
    items = data if isinstance(data, list) else [data]
    return [_state(item) for item in items if isinstance(item, dict)]


def container_state(inspect_output: str) -> ContainerState:
    data: Any = json.loads(inspect_output)
    return _state(data[0] if isinstance(data, list) else data)


def _state(item: dict[str, Any]) -> ContainerState:
    state = item.get("State") or {}
    config = item.get("Config") or {}
    labels = config.get("Labels") or {}
    image = item.get("Image")
    return ContainerState(
        id=str(item.get("Id") or item.get("ID") or ""),
        running=bool(state.get("Running")),
        status=str(state.get("Status") or ""),
        exit_code=state.get("ExitCode") if isinstance(state.get("ExitCode"), int) else None,
        oom_killed=bool(state.get("OOMKilled")),
        pid=int(state["Pid"]) if state.get("Pid") else None,
        labels={str(k): str(v) for k, v in labels.items()},
        image_id=normalise_digest(image) if isinstance(image, str) and image else None,
        host_ports=_host_ports((item.get("NetworkSettings") or {}).get("Ports") or {}),
        started_at=epoch(str(state.get("StartedAt") or "")),
    )


def _host_ports(ports: Any) -> dict[int, int]:
    """`NetworkSettings.Ports` ({"8000/tcp": [{"HostIp", "HostPort"}]}) -> {8000: host port}."""
    found: dict[int, int] = {}
    if not isinstance(ports, dict):
        return found
    for key, bindings in ports.items():
        with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
            found[int(str(key).split("/")[0])] = int(bindings[0]["HostPort"])
    return found


def epoch(text: str) -> float:
    """An engine's RFC 3339 time (nanoseconds, `Z` or an offset) -> epoch seconds; 0.0 when
    it is not one (or the zero time)."""
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip()
    )
    if not match:
        return 0.0
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    try:
        moment = datetime.fromisoformat(match.group(1) + zone).timestamp()
    except ValueError:
        return 0.0
    return max(0.0, moment + float("0." + (match.group(2) or "0")))


def oom_in_kernel_log(lines: Sequence[str], container_id: str, pid: int | None) -> bool:
    """Whether the kernel log says the memory cgroup of the container (its id is in the
    cgroup path with podman and docker) or its main process was OOM-killed. Engines do not
    always see it themselves (podman 4 with runc on cgroup v1 reports OOMKilled false)."""
    for line in lines:
        lowered = line.lower()
        if "oom" not in lowered and "out of memory" not in lowered:
            continue
        if container_id and "oom_memcg=" in line and container_id in line:
            return True
        if pid and f"Killed process {pid} " in line and "Memory cgroup" in line:
            return True
    return False


def containers_conf(*, runtime: str | None, nofile: int, nproc: int) -> str:
    """The containers.conf pilothouse writes for itself (pointed to by CONTAINERS_CONF):
    lowered default ulimits and, where crun cannot run, runc (docs/containers.md)."""
    text = (
        f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
    )
    if runtime:
        text += f'\n[engine]\nruntime = "{runtime}"\n'
    return text
