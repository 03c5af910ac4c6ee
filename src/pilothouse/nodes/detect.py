"""What this host offers: CPU cores, memory, GPUs and storage, read once at start-up.

- CPU cores: the cores this process may run on (its affinity), lowered to a cgroup v2
  `cpu.max` quota when one is set;
- memory: total RAM in MB (psutil), lowered to a cgroup v2 `memory.max` when one is set;
- GPUs: NVIDIA devices (`/dev/nvidia0`, `/dev/nvidia1`, ...) the host exposes;
- storage: the size in GB of the file system holding the data directory.
Settings (PILOTHOUSE_NODE_CAPACITY) override any of them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from pilothouse.nodes.placement import RESOURCES

CGROUP = Path("/sys/fs/cgroup")


def _cgroup_cpus(root: Path) -> float | None:
    try:
        quota, period = (root / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _cgroup_memory_mb(root: Path) -> float | None:
    try:
        value = (root / "memory.max").read_text().strip()
    except OSError:
        return None
    return None if value == "max" or not value.isdigit() else int(value) / (1024 * 1024)


def gpu_count(dev: Path = Path("/dev")) -> int:
    try:
        return sum(1 for p in dev.iterdir() if re.fullmatch(r"nvidia\d+", p.name))
    except OSError:
        return 0


def capacity(
    data_dir: Path, overrides: Mapping[str, Any] | None = None, *, cgroup: Path = CGROUP
) -> dict[str, float]:
    """This host's capacity in the services' resource fields."""
    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    limit = _cgroup_cpus(cgroup)
    if limit is not None:
        cpus = min(cpus, limit)
    memory = psutil.virtual_memory().total / (1024 * 1024)
    limit = _cgroup_memory_mb(cgroup)
    if limit is not None:
        memory = min(memory, limit)
    probe = data_dir if data_dir.exists() else Path("/")
    storage = shutil.disk_usage(probe).total / 1024**3
    found = {
        "cpu_cores": round(cpus, 3),
        "memory_mb": float(int(memory)),
        "gpu_units": float(gpu_count()),
        "storage_gb": float(int(storage)),
    }
    for key, value in (overrides or {}).items():
        if key in RESOURCES:
            found[key] = float(value)
    return found


def hostname() -> str:
    return socket.gethostname()[:253] or "localhost"
