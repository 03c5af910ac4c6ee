"""Capacity and placement rules (nodes/placement.py): tables, and a hypothesis property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.nodes.placement import (
    NodeState,
    Placement,
    Resources,
    amount,
    extra_replicas,
    place,
    place_one,
    strategy_of,
)

CPU15 = Resources(cpu_cores=1.5, memory_mb=512, storage_gb=1)


def node(
    name: str, cpu: float, mem: float = 8192, *, used_cpu: float = 0, **kw: object
) -> NodeState:
    return NodeState(
        name,
        Resources(cpu_cores=cpu, memory_mb=mem, gpu_units=kw.pop("gpus", 0), storage_gb=100),  # type: ignore[arg-type]
        Resources(cpu_cores=used_cpu),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("counts", "extra"),
    [
        ((0, 0, 3, 1, 0), 3),  # first deploy: every replica is new
        ((0, 3, 3, 1, 0), 1),  # rolling 3 with surge 1: one above
        ((0, 3, 3, 2, 0), 2),
        ((0, 4, 4, 1, 1), 1),  # one retired first, two started: 3 + 2 = 5, one above 4
        ((0, 3, 3, 0, 3), 0),  # all retired first
        ((2, 0, 4, 1, 0), 2),  # scale up by two
        ((3, 1, 3, 1, 0), 0),  # scale down
        ((3, 0, 3, 1, 0), 0),  # nothing to do
    ],
)
def test_extra_replicas(counts: tuple[int, int, int, int, int], extra: int) -> None:
    keep, old, target, surge, unavailable = counts
    assert (
        extra_replicas(
            keep=keep, old=old, target=target, max_surge=surge, max_unavailable=unavailable
        )
        == extra
    )


@pytest.mark.parametrize(
    ("nodes", "need", "count", "strategy", "expected"),
    [
        pytest.param(
            [node("local", 2.0, used_cpu=1.0)],
            CPU15,
            2,
            "binpack",
            Placement((), "needs 2 x 1.5 CPU, node local has 1.0 free"),
            id="issue-example",
        ),
        pytest.param(
            [node("local", 4.0)], CPU15, 2, "binpack", Placement(("local", "local")), id="fits"
        ),
        pytest.param(
            [node("local", 4.0, mem=800)],
            CPU15,
            2,
            "binpack",
            Placement(("local",), "needs 2 x 512 MB memory, node local has 800 free"),
            id="memory-short",
        ),
        pytest.param(
            [node("a", 4.0), node("b", 8.0)],
            CPU15,
            2,
            "binpack",
            Placement(("a", "a")),
            id="binpack-fills-fullest",
        ),
        pytest.param(
            [node("a", 4.0), node("b", 8.0)],
            CPU15,
            4,
            "spread",
            Placement(("b", "a", "b", "a")),
            id="spread-fewest-then-emptiest",
        ),
        pytest.param(
            [node("a", 1.0), node("b", 1.0)],
            CPU15,
            1,
            "binpack",
            Placement((), "needs 1 x 1.5 CPU, node a has 1.0 free, node b has 1.0 free"),
            id="two-nodes-short",
        ),
        pytest.param(
            [node("a", 8.0, status="down")],
            CPU15,
            1,
            "binpack",
            Placement((), "no ready node (nodes: a is down)"),
            id="none-ready",
        ),
        pytest.param(
            [node("a", 8.0)],
            Resources(cpu_cores=0.5, memory_mb=512, gpu_units=1),
            1,
            "binpack",
            Placement((), "needs 1 x 1.0 GPU, node a has 0.0 free"),
            id="gpu-short",
        ),
        pytest.param([node("a", 0.0)], CPU15, 0, "binpack", Placement(()), id="nothing-needed"),
    ],
)
def test_place(
    nodes: list[NodeState], need: Resources, count: int, strategy: str, expected: Placement
) -> None:
    assert place(nodes, need, count, strategy=strategy) == expected  # type: ignore[arg-type]


def test_selector_picks_labelled_nodes() -> None:
    nodes = [node("a", 8.0, labels={"zone": "x"}), node("b", 8.0, labels={"zone": "y"})]
    assert place(nodes, CPU15, 2, selector={"zone": "y"}).nodes == ("b", "b")
    assert place(nodes, CPU15, 1, selector={"zone": "z"}).shortfall == (
        "no ready node with labels zone=z (nodes: a is ready, b is ready)"
    )


@pytest.mark.parametrize(
    ("value", "text"), [(1.0, "1.0"), (1.5, "1.5"), (512.0, "512"), (0.25, "0.25"), (2, "2.0")]
)
def test_amount(value: float, text: str) -> None:
    assert amount(value) == text


def test_strategy_of() -> None:
    assert strategy_of({"placement": "spread"}) == "spread"
    assert strategy_of({}) is None
    assert strategy_of(None) is None


@settings(max_examples=40, deadline=None)
@given(
    caps=st.lists(st.integers(0, 16), min_size=1, max_size=4),
    count=st.integers(0, 12),
    strategy=st.sampled_from(["binpack", "spread"]),
)
def test_placement_never_overcommits(caps: list[int], count: int, strategy: str) -> None:
    nodes = [node(f"n{i}", float(c)) for i, c in enumerate(caps)]
    need = Resources(cpu_cores=1.0, memory_mb=1)
    result = place(nodes, need, count, strategy=strategy)  # type: ignore[arg-type]
    for n in nodes:
        assert result.nodes.count(n.name) <= n.capacity.cpu_cores
    fits = sum(caps) >= count
    assert (result.shortfall is None) == fits
    if fits:
        assert len(result.nodes) == count


THREE = [node("h1", 8.0), node("h2", 8.0), node("h3", 8.0)]


@pytest.mark.parametrize(
    ("nodes", "count", "strategy", "counts", "selector", "expected"),
    [
        pytest.param(THREE, 6, "spread", {}, {}, {"h1": 2, "h2": 2, "h3": 2}, id="spread-2-2-2"),
        pytest.param(
            [node("h1", 8.0, used_cpu=6.0), node("h2", 8.0), node("h3", 8.0)],
            6,
            "spread",
            {},
            {},
            {"h1": 1, "h2": 3, "h3": 2},
            id="spread-within-capacity",  # h1 holds one 1.5 CPU replica at most
        ),
        pytest.param(
            THREE,
            3,
            "spread",
            {"h1": (2,), "h2": (0,), "h3": (1,)},
            {},
            {"h2": 2, "h3": 1},
            id="spread-fewest-of-the-service-first",
        ),
        pytest.param(
            THREE,
            3,
            "spread",
            {"h1": (0, 2), "h2": (0, 0), "h3": (0, 1)},
            {},
            {"h1": 1, "h2": 1, "h3": 1},
            id="spread-the-rollouts-own-replicas-first",
        ),
        pytest.param(
            [node("h1", 8.0, used_cpu=2.0), node("h2", 8.0), node("h3", 8.0, used_cpu=4.0)],
            4,
            "binpack",
            {},
            {},
            {"h3": 2, "h1": 2},
            id="binpack-fills-fullest-first",
        ),
        pytest.param(
            [
                node("h1", 8.0, labels={"zone": "a"}),
                node("h2", 8.0, labels={"zone": "b"}),
                node("h3", 8.0, labels={"zone": "b"}),
            ],
            4,
            "spread",
            {},
            {"zone": "b"},
            {"h2": 2, "h3": 2},
            id="label-selector",
        ),
    ],
)
def test_place_across_hosts(
    nodes: list[NodeState],
    count: int,
    strategy: str,
    counts: dict[str, tuple[int, ...]],
    selector: dict[str, str],
    expected: dict[str, int],
) -> None:
    placed = place(nodes, CPU15, count, strategy=strategy, counts=counts, selector=selector)  # type: ignore[arg-type]
    assert placed.shortfall is None
    assert {n: placed.nodes.count(n) for n in set(placed.nodes)} == expected


def test_spread_never_puts_every_replica_on_one_host() -> None:
    for count in range(2, 10):
        placed = place(THREE, Resources(cpu_cores=0.1), count, strategy="spread")
        assert len(set(placed.nodes)) == min(count, 3)


def test_capacity_shortfall_across_hosts() -> None:
    small = [node("h1", 2.0), node("h2", 2.0), node("h3", 1.0)]
    placed = place(small, CPU15, 3, strategy="spread")
    assert placed.nodes == ("h1", "h2")
    assert placed.shortfall == (
        "needs 3 x 1.5 CPU, node h1 has 2.0 free, node h2 has 2.0 free, node h3 has 1.0 free"
    )


@pytest.mark.parametrize(
    ("prefer", "status", "expected"),
    [
        ("h3", "ready", "h3"),  # a restart stays on its node
        ("h3", "unreachable", "h2"),  # its node is gone: placed elsewhere (fewest first)
        (None, "ready", "h2"),
    ],
)
def test_place_one_prefers_the_replicas_own_node(
    prefer: str | None, status: str, expected: str
) -> None:
    nodes = [node("h1", 8.0), node("h2", 8.0), node("h3", 8.0, status=status)]
    counts = {"h1": (2,), "h2": (1,), "h3": (1,)}
    placed = place_one(nodes, CPU15, counts=counts, prefer=prefer)
    assert placed.nodes == (expected,)


@pytest.mark.parametrize(
    ("driver", "config", "transports", "expected"),
    [
        ("container", {}, ["local"], "binpack"),
        ("container", {}, ["local", "ssh"], "spread"),  # containers on other hosts: spread
        ("container", {"placement": "binpack"}, ["ssh", "ssh"], "binpack"),
        ("process", {}, ["local"], None),
        ("process", {}, ["local", "ssh"], "spread"),
        ("process", {"placement": "binpack"}, ["local"], "binpack"),
        ("command", {}, ["ssh"], None),
    ],
)
def test_which_services_are_placed(
    driver: str, config: dict[str, str], transports: list[str], expected: str | None
) -> None:
    from pilothouse.environments.models import Environment
    from pilothouse.nodes.service import applies
    from pilothouse.replicas.models import Node

    environment = Environment(name="prod", driver=driver, config=config)
    registered = [Node(name=f"n{i}", transport=t) for i, t in enumerate(transports)]
    assert applies(environment, registered) == expected


PY = {"python3": "3.11.2", "podman": None}
PODMAN = {"python3": None, "podman": "4.3.1"}
BOTH = {"python3": "3.11.2", "podman": "4.3.1"}


@pytest.mark.parametrize(
    ("software", "driver", "eligible"),
    [
        (PY, "process", True),
        (PY, "container", False),  # a python-only host cannot run containers
        (PODMAN, "process", False),  # a podman-only host cannot run processes
        (PODMAN, "container", True),
        (BOTH, "process", True),
        (BOTH, "container", True),
        (None, "process", True),  # this host (software not probed): as detected, it runs them
        (None, "container", True),
        ({}, "process", True),  # never probed (recorded before software was detected)
        ({"python3": None, "podman": None}, "process", False),
        (PY, "command", True),  # drivers that need nothing on a host
        (PY, None, True),
    ],
)
def test_node_has_what_the_driver_needs(
    software: dict[str, str | None] | None, driver: str | None, eligible: bool
) -> None:
    from pilothouse.nodes.placement import runs

    assert runs(software, driver) is eligible


def test_spread_skips_hosts_without_the_drivers_software() -> None:
    hosts = [
        node("local", 8.0),
        node("py", 8.0, software=PY),
        node("pod", 8.0, software=PODMAN),
    ]
    placed = place(hosts, CPU15, 4, strategy="spread", driver="process")
    assert set(placed.nodes) == {"local", "py"}
    placed = place(hosts, CPU15, 4, strategy="spread", driver="container")
    assert set(placed.nodes) == {"local", "pod"}
    # a restart's own node no longer fits the driver: placed on one that does
    one = place_one(hosts, CPU15, driver="container", prefer="py", counts={"local": (3,)})
    assert one.nodes == ("pod",)


def test_shortfall_names_the_missing_software() -> None:
    hosts = [node("py", 8.0, software=PY), node("py2", 8.0, software=PY, status="unreachable")]
    placed = place(hosts, CPU15, 1, strategy="spread", driver="container")
    assert placed.nodes == ()
    assert placed.shortfall == (
        "no ready node with podman (nodes: py is ready without podman, py2 is unreachable)"
    )
