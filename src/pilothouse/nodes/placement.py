"""Capacity and placement rules (seed 004 DeploymentResource, nodes). Pure.

- A node has a `capacity` (cpu_cores, memory_mb, gpu_units, storage_gb: the service's field
  names) and an allocation: the sum of the resources of the live replicas placed on it.
- A rollout or a scale needs room for the replicas it adds at its peak: `extra_replicas` walks
  the rolling-update plan (drivers/rolling.py) and counts how many replicas run at once above
  those running now (the surge included; old replicas retired ahead of their replacements under
  `max_unavailable` free their room first).
- `place` puts that many replicas on the ready nodes that carry the wanted labels, one at a time:
  `binpack` fills the fullest node that still fits; `spread` the node with the fewest replicas
  of this service (its `counts`, most significant first: the rollout's own replicas, then the
  service's), then the emptiest, so losing one host never takes every replica of a service
  when there is more than one host. When they do not all fit, the shortfall names the first
  resource that runs out and what each node has free: "needs 2 x 1.5 CPU, node local has 1.0
  free".
- A node runs a driver's replicas only when it has the software the driver needs (`runs`):
  python3 for the process driver, podman for the container driver, as detected when the host
  was added (`Node.software`); this host's node (software not probed) runs what its worker
  runs. Nodes without it are not eligible, and when none is left the shortfall says so:
  "no ready node with podman (nodes: h1 is ready without podman)".
- `place_one` places one replica, on the node it ran on (`prefer`) when that one is ready and
  has room (a restart after a crash), else as `place` would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pilothouse.drivers.rolling import plan_rolling_update

Strategy = Literal["binpack", "spread"]
STRATEGIES: tuple[Strategy, ...] = ("binpack", "spread")
RESOURCES = ("cpu_cores", "memory_mb", "gpu_units", "storage_gb")
UNITS = {
    "cpu_cores": "CPU",
    "memory_mb": "MB memory",
    "gpu_units": "GPU",
    "storage_gb": "GB storage",
}
EPSILON = 1e-9
#: What a host needs to run each driver's replicas (nodes/hosts.py detects it).
NEEDS = {"process": "python3", "container": "podman"}


@dataclass(frozen=True)
class Resources:
    cpu_cores: float = 0.0
    memory_mb: float = 0.0
    gpu_units: float = 0.0
    storage_gb: float = 0.0

    @classmethod
    def of(cls, values: Mapping[str, Any] | None) -> Resources:
        values = values or {}
        return cls(**{r: float(values.get(r) or 0) for r in RESOURCES})

    def get(self, resource: str) -> float:
        return float(getattr(self, resource))

    def __add__(self, other: Resources) -> Resources:
        return Resources(**{r: self.get(r) + other.get(r) for r in RESOURCES})

    def __sub__(self, other: Resources) -> Resources:
        return Resources(**{r: self.get(r) - other.get(r) for r in RESOURCES})

    def times(self, count: int) -> Resources:
        return Resources(**{r: self.get(r) * count for r in RESOURCES})

    def fits_in(self, free: Resources) -> bool:
        return all(self.get(r) <= free.get(r) + EPSILON for r in RESOURCES)

    def as_dict(self) -> dict[str, float]:
        return {r: round(self.get(r), 3) for r in RESOURCES}


@dataclass(frozen=True)
class NodeState:
    name: str
    capacity: Resources
    allocated: Resources = field(default_factory=Resources)
    status: str = "ready"
    labels: Mapping[str, str] = field(default_factory=dict)
    software: Mapping[str, str | None] | None = None  # None: not probed (this host)

    @property
    def free(self) -> Resources:
        return self.capacity - self.allocated


@dataclass(frozen=True)
class Placement:
    nodes: tuple[str, ...]  # one node name per replica placed, in order
    shortfall: str | None = None  # set when not every replica fits


def extra_replicas(
    *, keep: int, old: int, target: int, max_surge: int, max_unavailable: int
) -> int:
    """How many replicas the rollout runs at its peak above the `keep + old` running now."""
    plan = plan_rolling_update(
        keep=keep, old=old, target=target, max_surge=max_surge, max_unavailable=max_unavailable
    )
    initial = keep + old
    serving = peak = initial
    for step in plan.steps:
        serving -= step.retire_first
        peak = max(peak, serving + step.start)
        serving += step.start - step.retire_after
    return max(0, peak - initial)


def amount(value: float) -> str:
    """1.0 -> '1.0', 1.5 -> '1.5', 512.0 -> '512', 0.25 -> '0.25'."""
    if abs(value - round(value)) < EPSILON and abs(value) >= 10:
        return str(round(value))
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def runs(software: Mapping[str, str | None] | None, driver: str | None) -> bool:
    """Whether a host with `software` (None: not probed, this host) can run `driver`'s
    replicas: it has what NEEDS names for the driver, if anything. A host never probed (None or
    empty: this host, or one recorded before software was detected) runs what it is given."""
    wanted = NEEDS.get(driver or "")
    return not software or wanted is None or bool(software.get(wanted))


def _eligible(node: NodeState, selector: Mapping[str, str], driver: str | None) -> bool:
    return node.status == "ready" and matches(node.labels, selector) and runs(node.software, driver)


def _pick(
    candidates: list[NodeState], strategy: Strategy, counts: Mapping[str, tuple[int, ...]]
) -> NodeState:
    """binpack: the node with the least free CPU (then memory); spread: the fewest replicas of
    the service (`counts`), then the most free CPU (then memory)."""
    if strategy == "spread":
        return min(
            candidates,
            key=lambda n: (counts.get(n.name, ()), -n.free.cpu_cores, -n.free.memory_mb, n.name),
        )
    return min(candidates, key=lambda n: (n.free.cpu_cores, n.free.memory_mb, n.name))


def _bump(counts: tuple[int, ...]) -> tuple[int, ...]:
    """One more replica of the service on a node: every count goes up by one."""
    return tuple(c + 1 for c in counts) if counts else (1,)


def place(
    nodes: Sequence[NodeState],
    need: Resources,
    count: int,
    *,
    strategy: Strategy = "binpack",
    selector: Mapping[str, str] | None = None,
    counts: Mapping[str, tuple[int, ...]] | None = None,
    driver: str | None = None,
) -> Placement:
    """Place `count` replicas needing `need` each; the shortfall when they do not all fit.
    `counts`: per node name, the service's replicas there (spread places by them); `driver`:
    only nodes that have its software (`runs`)."""
    selector = selector or {}
    tally = dict(counts or {})
    eligible = [n for n in nodes if _eligible(n, selector, driver)]
    if count <= 0:
        return Placement(())
    if not eligible:
        software = NEEDS.get(driver or "")
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(selector.items()))
        parts = ([f"labels {wanted}"] if wanted else []) + ([software] if software else [])
        where = f" with {' and '.join(parts)}" if parts else ""

        def status(n: NodeState) -> str:
            if n.status == "ready" and software and not runs(n.software, driver):
                return f"{n.name} is ready without {software}"
            return f"{n.name} is {n.status}"

        known = ", ".join(status(n) for n in nodes) or "none registered"
        return Placement((), f"no ready node{where} (nodes: {known})")
    state = {n.name: n for n in eligible}
    placed: list[str] = []
    for _ in range(count):
        candidates = [n for n in state.values() if need.fits_in(n.free)]
        if not candidates:
            return Placement(tuple(placed), shortfall(eligible, need, count))
        chosen = _pick(candidates, strategy, tally)
        state[chosen.name] = replace(chosen, allocated=chosen.allocated + need)
        tally[chosen.name] = _bump(tally.get(chosen.name, ()))
        placed.append(chosen.name)
    return Placement(tuple(placed))


def place_one(
    nodes: Sequence[NodeState],
    need: Resources,
    *,
    strategy: Strategy = "spread",
    selector: Mapping[str, str] | None = None,
    counts: Mapping[str, tuple[int, ...]] | None = None,
    prefer: str | None = None,
    driver: str | None = None,
) -> Placement:
    """One replica: on `prefer` when that node is ready, carries the labels, has the
    driver's software and has room; else placed like `place` does."""
    home = next((n for n in nodes if n.name == prefer), None)
    if home is not None and _eligible(home, selector or {}, driver) and need.fits_in(home.free):
        return Placement((home.name,))
    return place(nodes, need, 1, strategy=strategy, selector=selector, counts=counts, driver=driver)


def shortfall(nodes: Sequence[NodeState], need: Resources, count: int) -> str:
    """'needs 2 x 1.5 CPU, node local has 1.0 free': the first resource that cannot hold
    `count` replicas on these nodes, with what each node has free of it."""
    short = next(
        (
            r
            for r in RESOURCES
            if need.get(r) > 0
            and sum(int((n.free.get(r) + EPSILON) // need.get(r)) for n in nodes) < count
        ),
        None,
    )
    if short is None:  # each resource alone fits, not all together on one node
        short = (
            next(r for r in RESOURCES if need.get(r) > 0)
            if any(need.get(r) > 0 for r in RESOURCES)
            else "cpu_cores"
        )
    frees = ", ".join(
        f"node {n.name} has {amount(max(0.0, n.free.get(short)))} free" for n in nodes
    )
    return f"needs {count} x {amount(need.get(short))} {UNITS[short]}, {frees}"


def strategy_of(config: Mapping[str, Any] | None) -> Strategy | None:
    """An environment's placement strategy (`config.placement`), None when not set."""
    value = (config or {}).get("placement")
    return value if value in STRATEGIES else None
