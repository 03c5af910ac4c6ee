"""CPU and memory limits of process replicas through cgroups v2, where the host allows it.

Format and guarantee: with a usable cgroup v2 hierarchy (mounted, offering the `memory` and `cpu`
controllers, writable by pilothouse), each replica gets its own group
`<mount>/pilothouse/<replica id>` with `memory.max` = the service's `memory_mb` in bytes,
`memory.swap.max` = 0 and `cpu.max` = `<cpu_cores x 100000> 100000`; its process is moved there
right after it starts, so the kernel caps its CPU and kills it when it passes its memory (an OOM
kill, counted in `memory.events` and named as the restart reason). Otherwise (no cgroup v2, the
controllers not offered, e.g. a hybrid v1/v2 host, or no write access) enforcement falls back to
sampling: the supervisor reads each replica's memory every few seconds and restarts one that
stays over its limit longer than a grace period; CPU is then measured, not capped.
`pilothouse replicas` shows which one is in effect per replica ("cgroup" or "sampling").

Building what to write is pure (`limit_files`); writing it is `CgroupV2`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Enforcement = Literal["cgroup", "sampling"]
CPU_PERIOD = 100_000  # microseconds, the kernel's default period
GROUP = "pilothouse"
NEEDED = ("memory", "cpu")


def limit_files(memory_mb: float | None, cpu_cores: float | None) -> dict[str, str]:
    """The control files of one replica's group and what goes in them."""
    files: dict[str, str] = {}
    if memory_mb:
        files["memory.max"] = str(int(memory_mb * 1024 * 1024))
        files["memory.swap.max"] = "0"
    if cpu_cores:
        files["cpu.max"] = f"{max(1000, int(cpu_cores * CPU_PERIOD))} {CPU_PERIOD}"
    return files


def cgroup2_mounts(mounts_text: str) -> list[Path]:
    """Mount points of cgroup2 file systems in a /proc/self/mounts text."""
    found = []
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            found.append(Path(parts[1]))
    return found


def oom_kills(events_text: str) -> int:
    """The `oom_kill` count of a memory.events text (0 when absent)."""
    for line in events_text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


@dataclass(frozen=True)
class Detected:
    """Where replica groups go (None: sampling) and why, for the log and the docs."""

    root: Path | None
    why: str


def detect(mounts_file: Path = Path("/proc/self/mounts")) -> Detected:
    """Find a cgroup v2 hierarchy pilothouse can put replicas in, with memory and cpu."""
    try:
        mounts = cgroup2_mounts(mounts_file.read_text())
    except OSError as exc:
        return Detected(None, f"cannot read {mounts_file}: {exc.strerror}")
    if not mounts:
        return Detected(None, "no cgroup v2 hierarchy is mounted")
    reasons = []
    for mount in mounts:
        try:
            offered = (mount / "cgroup.controllers").read_text().split()
        except OSError as exc:
            reasons.append(f"{mount}: {exc.strerror}")
            continue
        missing = [c for c in NEEDED if c not in offered]
        if missing:
            reasons.append(f"{mount} offers no {' or '.join(missing)} controller")
            continue
        root = mount / GROUP
        try:
            _enable(mount)
            root.mkdir(exist_ok=True)
            _enable(root)
        except OSError as exc:
            reasons.append(f"{mount} is not writable: {exc.strerror}")
            continue
        return Detected(root, f"cgroup v2 at {mount}")
    return Detected(None, "; ".join(reasons))


def _enable(group: Path) -> None:
    """Let the group's children use the memory and cpu controllers."""
    enabled = (group / "cgroup.subtree_control").read_text().split()
    wanted = [c for c in NEEDED if c not in enabled]
    if wanted:
        (group / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))


class CgroupV2:
    """Per-replica groups under `root` (found by `detect`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def group(self, replica_id: object) -> Path:
        return self.root / str(replica_id)

    def place(
        self, replica_id: object, pid: int, memory_mb: float | None, cpu_cores: float | None
    ) -> bool:
        """Put the process in its replica's group with the limits; False if that failed."""
        group = self.group(replica_id)
        self.release(replica_id)  # a fresh group per start: its OOM count starts at 0
        try:
            group.mkdir(exist_ok=True)
            for name, value in limit_files(memory_mb, cpu_cores).items():
                path = group / name
                if path.exists():
                    path.write_text(value)
            (group / "cgroup.procs").write_text(str(pid))
        except OSError:
            return False
        return True

    def oom_killed(self, replica_id: object) -> int:
        """How many times the kernel killed a process of this replica at its memory limit."""
        try:
            return oom_kills((self.group(replica_id) / "memory.events").read_text())
        except OSError:
            return 0

    def release(self, replica_id: object) -> None:
        """Remove the replica's group once nothing runs in it (best effort)."""
        with contextlib.suppress(OSError):
            os.rmdir(self.group(replica_id))
