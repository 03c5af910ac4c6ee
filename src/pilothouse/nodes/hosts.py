"""Hosts reached over SSH: the pure rules (no I/O).

- `parse_target`: `root@HOST[:PORT]`; `check_address`: a host name or an IPv4 address. IPv6
  is refused (`root@[2001:db8::5]`): replica addresses, readiness probes, the router's upstreams
  and the shim's socket are IPv4 only.
- `trust_problem`: the host-key trust decision when a node is added. The first contact needs
  the fingerprint the operator checked on the host (`--trust SHA256:...`); without one the
  refusal shows the fingerprint the host presents and the exact option to pass; with a
  different one it refuses and shows both.
- `FACTS_ARGV` / `parse_facts`: what a host offers, read through its transport with one POSIX
  shell script (the shape of nodes/detect.py: cpu_cores lowered to a cgroup v2 `cpu.max`,
  memory_mb to `memory.max`, gpu_units from /dev/nvidiaN, storage_gb of `/`), and the
  software the drivers need: python3 (process driver), podman (container driver).
- `verdict`: what a probe's outcome does to a node's status: a ready (or draining) node silent
  for `after` seconds is lost (-> unreachable); an unreachable node that answers returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pilothouse.errors import ValidationFailed

TARGET = re.compile(
    r"^(?P<user>[A-Za-z_][A-Za-z0-9_.-]{0,31})@(?P<host>\[[0-9A-Fa-f:.]+\]|[^@:\s\[\]]+)(?::(?P<port>\d{1,5}))?$"
)


NO_IPV6 = (
    "IPv6 is not supported yet (replica addresses, readiness probes and the router are IPv4 "
    "only): give an IPv4 address or a host name"
)


def check_address(value: str, field: str = "address") -> str:
    """A node's address: a host name or an IPv4 address (no IPv6 literal)."""
    if ":" in value:
        raise ValidationFailed(field, NO_IPV6)
    return value


def parse_target(text: str) -> tuple[str, str, int]:
    """(user, host, port) of `user@host[:port]`; ValueError saying what is wrong."""
    if "@[" in text:
        raise ValueError(NO_IPV6)
    found = TARGET.match(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not USER@HOST[:PORT] (e.g. root@198.18.1.2:22)")
    port = int(found["port"] or 22)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not within 1-65535")
    return found["user"], found["host"].strip("[]"), port


def trust_problem(
    node: str, where: str, algorithm: str, presented: str, trusted: str | None
) -> str | None:
    """Why the host key `presented` (a SHA256 fingerprint) must not be trusted, or None."""
    if trusted is None:
        return (
            f"first contact with {node} ({where}): it presents the {algorithm} host key "
            f"{presented}; check it on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) "
            f"and, if it matches, pass --trust {presented}"
        )
    if trusted.strip() != presented:
        return (
            f"{node} ({where}) presents the {algorithm} host key {presented}, not the trusted "
            f"{trusted.strip()}; refused (check the host before trusting it)"
        )
    return None


FACTS_SCRIPT = r"""
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
echo "cpu_max=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null)"
echo "mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null)"
echo "mem_max=$(cat /sys/fs/cgroup/memory.max 2>/dev/null)"
echo "disk_kb=$(df -Pk / 2>/dev/null | awk 'NR==2 {print $2}')"
echo "gpus=$(ls /dev 2>/dev/null | grep -c '^nvidia[0-9][0-9]*$')"
echo "hostname=$(uname -n 2>/dev/null)"
if command -v python3 >/dev/null 2>&1; then
  echo "python3=$(python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)"
fi
if command -v podman >/dev/null 2>&1; then
  echo "podman=$(podman --version 2>/dev/null | awk '{print $NF}')"
fi
"""
FACTS_ARGV = ("sh", "-c", FACTS_SCRIPT)


@dataclass(frozen=True)
class Facts:
    capacity: dict[str, float]
    hostname: str | None = None
    software: dict[str, str | None] = field(default_factory=dict)

    @property
    def python3(self) -> str | None:
        return self.software.get("python3")

    @property
    def podman(self) -> str | None:
        return self.software.get("podman")


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def parse_facts(output: str) -> Facts:
    """Facts from FACTS_SCRIPT's `key=value` lines (a missing or odd value counts as 0)."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    cpus = _number(values.get("cpus")) or 0.0
    quota = (values.get("cpu_max") or "").split()
    if len(quota) == 2 and quota[0] != "max":
        limit, period = _number(quota[0]), _number(quota[1])
        if limit and period:
            cpus = min(cpus, limit / period) if cpus else limit / period
    memory = (_number(values.get("mem_kb")) or 0.0) / 1024
    mem_max = values.get("mem_max") or ""
    if mem_max.isdigit():
        memory = min(memory, int(mem_max) / (1024 * 1024)) if memory else int(mem_max) / 1024**2
    storage = (_number(values.get("disk_kb")) or 0.0) / 1024**2
    capacity = {
        "cpu_cores": round(cpus, 3),
        "memory_mb": float(int(memory)),
        "gpu_units": float(int(_number(values.get("gpus")) or 0)),
        "storage_gb": float(int(storage)),
    }
    software = {
        name: (values.get(name) or None) if name in values else None
        for name in ("python3", "podman")
    }
    return Facts(capacity, values.get("hostname") or None, software)


def missing_software(facts: Facts) -> str | None:
    """Why no driver can run replicas on the host (neither python3 nor podman), or None."""
    if facts.python3 is None and facts.podman is None:
        return (
            "has neither python3 (needed by the process driver) nor podman (the container "
            "driver); install one there"
        )
    return None


Verdict = Literal["seen", "returned", "lost", "silent"]


def verdict(
    *,
    status: str,
    answered: bool,
    last_seen_at: datetime | None,
    now: datetime,
    after: float,
) -> Verdict:
    """What one probe does: `seen` (answered, nothing changes but last seen), `returned`
    (an unreachable node answered: ready again), `lost` (a ready or draining node has not
    answered for `after` seconds: unreachable), `silent` (no answer, nothing to do yet)."""
    if answered:
        return "returned" if status == "unreachable" else "seen"
    if status not in ("ready", "draining"):
        return "silent"
    if last_seen_at is None or (now - last_seen_at).total_seconds() >= after:
        return "lost"
    return "silent"
