"""Nodes: registration of this host, allocation vs capacity, and the pre-flight capacity check.

The rules are pure (nodes/placement.py); this module reads the store for them. A node's
allocation is the sum of the resources (the service's cpu_cores, memory_mb, gpu_units,
storage_gb) of its live replicas (pending, starting, running, stopping). A replica recorded
without a node (before nodes were recorded) counts on the local node.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, visible
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import Keyring, open_value, seal_value
from pilothouse.core.db import one_by_ref
from pilothouse.drivers import ssh
from pilothouse.drivers.transport import NodeAccess, TransportUnavailable
from pilothouse.environments.models import Environment
from pilothouse.errors import Conflict, PilothouseError, ValidationFailed
from pilothouse.nodes import detect, hosts
from pilothouse.nodes.placement import (
    NodeState,
    Resources,
    Strategy,
    extra_replicas,
    place,
    place_one,
    strategy_of,
)
from pilothouse.replicas.models import Node, Replica
from pilothouse.services.models import Service

#: Replica statuses that hold their resources on a node.
HOLDING = ("pending", "starting", "running", "stopping")
#: Drivers whose services are always placed (their resources are reserved on a node); other
#: environments opt in with `config.placement`.
PLACED_DRIVERS = frozenset({"container"})
LOCAL = "local"


async def register(
    session: AsyncSession,
    name: str,
    *,
    capacity: Mapping[str, float],
    labels: Mapping[str, str] | None = None,
    hostname: str | None = None,
) -> Node:
    """Create or refresh the node `name` (its capacity, labels, hostname, last seen)."""
    node = await session.scalar(sa.select(Node).where(Node.name == name).with_for_update())
    if node is None:
        node = Node(name=name, hostname=hostname or detect.hostname(), status="ready")
        session.add(node)
    node.hostname = hostname or node.hostname or detect.hostname()
    node.capacity = dict(capacity)
    node.labels = dict(labels or {})
    node.last_seen_at = utcnow()
    await session.flush()
    return node


async def register_local(
    session: AsyncSession,
    data_dir: Path,
    *,
    name: str = LOCAL,
    labels: Mapping[str, str] | None = None,
    overrides: Mapping[str, float] | None = None,
) -> Node:
    """This host as a node, with its detected capacity (start-up and heartbeat)."""
    return await register(
        session, name, capacity=detect.capacity(data_dir, overrides), labels=labels
    )


async def ensure_nodes(session: AsyncSession) -> Sequence[Node]:
    """Every node; the local host registered with its detected capacity when no host
    pilothouse runs on is yet (an API-only process before any worker started)."""
    nodes = (await session.scalars(sa.select(Node).order_by(Node.name))).all()
    if not any(n.transport != "ssh" for n in nodes):
        await register_local(session, Path("/"))
        nodes = (await session.scalars(sa.select(Node).order_by(Node.name))).all()
    return nodes


async def allocations(session: AsyncSession) -> dict[uuid.UUID | None, Resources]:
    """Per node id (None: replicas recorded without a node), the resources its live replicas
    hold."""
    rows = await session.execute(
        sa.select(
            Replica.node_id,
            sa.func.count(),
            sa.func.sum(Service.cpu_cores),
            sa.func.sum(Service.memory_mb),
            sa.func.sum(Service.gpu_units),
            sa.func.sum(Service.storage_gb),
        )
        .join(Service, Service.id == Replica.service_id)
        .where(Replica.status.in_(HOLDING))
        .group_by(Replica.node_id)
    )
    out: dict[uuid.UUID | None, Resources] = {}
    for node_id, _count, cpu, mem, gpu, storage in rows:
        out[node_id] = Resources(
            float(cpu or 0), float(mem or 0), float(gpu or 0), float(storage or 0)
        )
    return out


async def replica_counts(session: AsyncSession) -> dict[uuid.UUID | None, int]:
    rows = await session.execute(
        sa.select(Replica.node_id, sa.func.count())
        .where(Replica.status.in_(HOLDING))
        .group_by(Replica.node_id)
    )
    return {node_id: int(count) for node_id, count in rows}


def _local_id(nodes: Sequence[Node]) -> uuid.UUID | None:
    here = [n for n in nodes if n.transport != "ssh"]
    local = next((n for n in here if n.name == LOCAL), here[0] if len(here) == 1 else None)
    return local.id if local is not None else None


@dataclass(frozen=True)
class NodeView:
    node: Node
    capacity: Resources
    allocated: Resources
    replicas: int

    @property
    def free(self) -> Resources:
        return self.capacity - self.allocated


async def node_views(session: AsyncSession) -> list[NodeView]:
    nodes = await ensure_nodes(session)
    held = await allocations(session)
    counts = await replica_counts(session)
    local = _local_id(nodes)
    views = []
    for node in nodes:
        allocated = held.get(node.id, Resources())
        replicas = counts.get(node.id, 0)
        if node.id == local:  # replicas recorded without a node run here
            allocated = allocated + held.get(None, Resources())
            replicas += counts.get(None, 0)
        views.append(NodeView(node, Resources.of(node.capacity), allocated, replicas))
    return views


async def list_nodes(session: AsyncSession, actor: Principal) -> list[NodeView]:
    """Every node with its allocation (any signed-in caller may read them)."""
    return await node_views(session)


async def get_node(session: AsyncSession, actor: Principal, ref: str) -> NodeView:
    """One node by name, id or unique id prefix; 404 when none matches."""
    await ensure_nodes(session)
    found: Node = await one_by_ref(
        session, sa.select(Node).order_by(Node.id), Node.id, ref, "node", name_column=Node.name
    )
    views = await node_views(session)
    return next(v for v in views if v.node.id == found.id)


async def node_replicas(session: AsyncSession, actor: Principal, view: NodeView) -> Sequence[Any]:
    """The live replicas on the node the actor may see, with their service names."""
    nodes = await ensure_nodes(session)
    here = Replica.node_id == view.node.id
    if view.node.id == _local_id(nodes):
        here = sa.or_(here, Replica.node_id.is_(None))
    query = (
        sa.select(Replica, Service.name)
        .join(Service, Service.id == Replica.service_id)
        .where(
            here,
            Replica.status.in_(HOLDING),
            Service.deleted_at.is_(None),
            visible(actor, Service.owner_id, Service.environment_id),
        )
        .order_by(Replica.created_at)
    )
    return (await session.execute(query)).all()


def is_remote(node: Node) -> bool:
    """Whether the node is reached through a transport other than this host's."""
    return node.transport != "local"


#: Drivers that run replicas on remote nodes (the others run them on this host).
REMOTE_DRIVERS = frozenset({"process", "container"})


def applies(environment: Environment, nodes: Sequence[Node] = ()) -> Strategy | None:
    """The placement strategy of the environment's services, None when they are not placed:
    `config.placement`; else spread for the process and container drivers once there are
    remote nodes (`nodes`: the registered ones), binpack for the container driver before."""
    strategy = strategy_of(environment.config)
    if strategy is not None:
        return strategy
    if environment.driver in REMOTE_DRIVERS and any(is_remote(n) for n in nodes):
        return "spread"
    if environment.driver in PLACED_DRIVERS:
        return "binpack"
    return None


def need_of(service: Service) -> Resources:
    return Resources(
        float(service.cpu_cores),
        float(service.memory_mb),
        float(service.gpu_units),
        float(service.storage_gb),
    )


async def preflight(
    session: AsyncSession,
    service: Service,
    environment: Environment,
    *,
    version: str,
    event_type: str,
) -> str | None:
    """The shortfall when the replicas a rollout or scale adds (surge included) do not fit on
    the ready nodes, else None. Services of environments that are not placed always fit."""
    if event_type == "stop":
        return None
    registered = (await session.scalars(sa.select(Node))).all()
    strategy = applies(environment, registered)
    if strategy is None:
        return None
    live = (
        await session.scalars(
            sa.select(Replica.version).where(
                Replica.service_id == service.id, Replica.status.in_(("starting", "running"))
            )
        )
    ).all()
    replaces = event_type in ("restart", "config_update")
    keep = 0 if replaces else min(sum(1 for v in live if v == version), service.target_replicas)
    config = service.driver_config or {}
    extra = extra_replicas(
        keep=keep,
        old=len(live) - keep,
        target=service.target_replicas,
        max_surge=int(config.get("max_surge", 1)),
        max_unavailable=int(config.get("max_unavailable", 0)),
    )
    if extra == 0:
        return None
    views = await node_views(session)
    selector = (environment.config or {}).get("node_labels") or {}
    result = place(
        _states(views),
        need_of(service),
        extra,
        strategy=strategy,
        selector=selector,
        driver=environment.driver,
    )
    return result.shortfall


async def check_capacity(
    session: AsyncSession,
    service: Service,
    environment: Environment,
    *,
    version: str,
    event_type: str,
) -> None:
    """409 naming the shortfall when the new replicas do not fit; nothing is changed."""
    short = await preflight(session, service, environment, version=version, event_type=event_type)
    if short is not None:
        raise Conflict(
            f"{service.name} does not fit: {short} (nothing was started or stopped)",
            detail={"service": service.name, "shortfall": short},
        )


async def local_node_id(session: AsyncSession, name: str = LOCAL) -> uuid.UUID | None:
    """The id of the node this process runs on (registered under `name` by its worker at
    start); else the only node; None when none is registered yet (read only: never writes)."""
    node_id: uuid.UUID | None = await session.scalar(sa.select(Node.id).where(Node.name == name))
    if node_id is None:
        nodes = (await session.scalars(sa.select(Node).order_by(Node.name))).all()
        node_id = _local_id(nodes) if nodes else None
    return node_id


def _states(views: Sequence[NodeView]) -> list[NodeState]:
    """The placement view of the nodes; a host's software as detected when it was added
    (this host's is not probed: it runs what its worker runs)."""
    return [
        NodeState(
            v.node.name,
            v.capacity,
            v.allocated,
            v.node.status,
            v.node.labels or {},
            dict(v.node.software or {}) if is_remote(v.node) else None,
        )
        for v in views
    ]


async def service_counts(
    session: AsyncSession, service_id: uuid.UUID, deployment_id: uuid.UUID | None
) -> dict[uuid.UUID | None, tuple[int, ...]]:
    """Per node id, (replicas of this deployment, replicas of the service) that hold room
    there (spread places by them; without a deployment, only the service's)."""
    rows = await session.execute(
        sa.select(Replica.node_id, Replica.deployment_id).where(
            Replica.service_id == service_id, Replica.status.in_(HOLDING)
        )
    )
    mine: dict[uuid.UUID | None, int] = {}
    total: dict[uuid.UUID | None, int] = {}
    for node_id, dep_id in rows:
        total[node_id] = total.get(node_id, 0) + 1
        if deployment_id is not None and dep_id == deployment_id:
            mine[node_id] = mine.get(node_id, 0) + 1
    if deployment_id is None:
        return {n: (c,) for n, c in total.items()}
    return {n: (mine.get(n, 0), c) for n, c in total.items()}


@dataclass(frozen=True)
class Chosen:
    """Where the next replica goes: the node (None: not placed, this host) or the shortfall."""

    node: Node | None
    shortfall: str | None = None


async def choose_node(
    session: AsyncSession,
    service: Service,
    environment: Environment,
    *,
    deployment_id: uuid.UUID | None,
    prefer: uuid.UUID | None = None,
    pending: Mapping[uuid.UUID, int] | None = None,
    local_name: str = LOCAL,
) -> Chosen:
    """The node of one new replica of the service (nodes/placement.py decides): the node it
    ran on (`prefer`) when that one is ready and has room, else placed by the environment's
    strategy. `pending`: replicas placed on each node that are not recorded yet. Not placed
    (no strategy): this host's node. Reads only (no node registered: None)."""
    if await session.scalar(sa.select(sa.func.count()).select_from(Node)) == 0:
        return Chosen(None)
    views = await node_views(session)
    strategy = applies(environment, [v.node for v in views])
    by_id = {v.node.id: v.node for v in views}
    if strategy is None:
        local = next((v.node for v in views if v.node.name == local_name), None)
        return Chosen(local or (views[0].node if len(views) == 1 else None))
    need = need_of(service)
    pending = pending or {}
    views = [
        NodeView(v.node, v.capacity, v.allocated + need.times(pending.get(v.node.id, 0)), 0)
        for v in views
    ]
    counts = await service_counts(session, service.id, deployment_id)
    local_id = _local_id([v.node for v in views])
    named: dict[str, tuple[int, ...]] = {}
    for node_id, count in counts.items():
        where = node_id if node_id is not None else local_id
        node = by_id.get(where) if where is not None else None
        if node is not None:
            named[node.name] = count
    for node_id, extra in pending.items():
        if node_id in by_id and extra:
            name = by_id[node_id].name
            named[name] = tuple(
                c + extra for c in named.get(name, (0,) * (2 if deployment_id else 1))
            )
    selector = (environment.config or {}).get("node_labels") or {}
    home = by_id.get(prefer) if prefer is not None else None
    result = place_one(
        _states(views),
        need,
        strategy=strategy,
        selector=selector,
        counts=named,
        prefer=home.name if home is not None else None,
        driver=environment.driver,
    )
    if result.shortfall is not None or not result.nodes:
        return Chosen(None, result.shortfall or "no node")
    chosen = next(v.node for v in views if v.node.name == result.nodes[0])
    return Chosen(chosen)


# -- hosts over SSH ------------------------------------------------------------------------------


class HostUnreachable(PilothouseError):
    """A host that does not answer while it is being added (503 with the cause)."""

    status = 503


@dataclass(frozen=True)
class HostSpec:
    """What `node add --ssh` gives: the name, where and as whom to log in, the client key (in
    clear, only in memory), the fingerprint the operator trusts and the labels."""

    name: str
    address: str
    private_key: str
    ssh_user: str = "root"
    ssh_port: int = 22
    trust: str | None = None
    labels: Mapping[str, str] | None = None

    def __repr__(self) -> str:
        return f"HostSpec({self.name!r}, {self.ssh_user}@{self.address}:{self.ssh_port})"


async def _name_free(session: AsyncSession, name: str) -> None:
    if await session.scalar(sa.select(Node.id).where(Node.name == name)) is not None:
        raise Conflict(f"a node named {name!r} exists already", detail={"name": name})


async def add_host(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    spec: HostSpec,
    *,
    timeout: float = ssh.CONNECT_TIMEOUT,
) -> Node:
    """Register a host reached over SSH (admin): read its host key and check it against the
    trusted fingerprint (first contact needs one), log in with the client key, detect its
    capacity and software, and store it with the key sealed. Nothing is stored on refusal."""
    require(actor, "manage_nodes", what=f"node {spec.name}")
    try:
        ssh.private_key(spec.private_key)
    except ValueError as exc:
        raise ValidationFailed("private_key", str(exc)) from None
    await _name_free(session, spec.name)
    where = f"{spec.ssh_user}@{spec.address}:{spec.ssh_port}"
    try:
        presented = await ssh.fetch_host_key(spec.address, spec.ssh_port, timeout=timeout)
    except TransportUnavailable as exc:
        raise HostUnreachable(f"node {spec.name}: {exc}") from None
    algorithm, fingerprint = presented.split()[0], ssh.fingerprint(presented)
    problem = hosts.trust_problem(spec.name, where, algorithm, fingerprint, spec.trust)
    if problem is not None:
        raise ValidationFailed("trust", problem)
    access = NodeAccess(
        id=uuid.uuid4(),
        name=spec.name,
        kind="ssh",
        address=spec.address,
        ssh_user=spec.ssh_user,
        ssh_port=spec.ssh_port,
        host_key=presented,
        private_key=spec.private_key,
    )
    transport = ssh.SSHTransport(access, connect_timeout=timeout)
    try:
        done = await transport.run(hosts.FACTS_ARGV, timeout=timeout)
    except ssh.KeyRefused:
        raise ValidationFailed(
            "private_key",
            f"was refused by {where} (is its public key in that user's authorized_keys?)",
        ) from None
    except (TransportUnavailable, TimeoutError) as exc:
        raise HostUnreachable(f"node {spec.name}: {exc}") from None
    finally:
        await transport.close()
    facts = hosts.parse_facts(done.stdout.decode(errors="replace"))
    lacking = hosts.missing_software(facts)
    if lacking is not None:
        raise ValidationFailed("address", f"{where} {lacking}")
    await _name_free(session, spec.name)  # again: the checks above took a while
    node = Node(
        name=spec.name,
        hostname=(facts.hostname or spec.address)[:253],
        address=spec.address,
        status="ready",
        capacity=facts.capacity,
        labels=dict(spec.labels or {}),
        last_seen_at=utcnow(),
        transport="ssh",
        ssh_user=spec.ssh_user,
        ssh_port=spec.ssh_port,
        host_key=presented,
        private_key_sealed=seal_value(spec.private_key, keyring),
        key_id=keyring.current.hex(),
        software=dict(facts.software),
    )
    try:
        async with session.begin_nested():
            session.add(node)
            await session.flush()
    except IntegrityError:  # another `node add` of the same name won the race
        raise Conflict(
            f"a node named {spec.name!r} exists already", detail={"name": spec.name}
        ) from None
    audit.record(
        session,
        actor,
        "create",
        "node",
        node.id,
        {"name": node.name, "address": where, "host_key": fingerprint},
    )
    return node


def unfenced(name: str, status: str, since: str, force: bool) -> str | None:
    """Why a node whose fencing is pending (replicas lost with it may still run there) must
    not be removed, or None (pure). Once forgotten, its processes could never be stopped by
    pilothouse: a node that answers is fenced by the next probe (within seconds), so try
    again; an unreachable one is removed only with `force` (the operator stopped them on the
    host, or the host is gone for good)."""
    if force:
        return None
    lead = (
        f"node {name} cannot go from {status} to removed: replicas lost with it at {since} "
        "may still run there and were not stopped (fenced) yet"
    )
    if status == "unreachable":
        return (
            f"{lead}; bring the host back (they are stopped as soon as it answers) and remove "
            "it then, or stop them on the host yourself (or make sure it is gone for good) "
            "and remove it with force"
        )
    return f"{lead}; it is fenced at its next probe (within seconds): try again then"


async def remove_node(
    session: AsyncSession, actor: Principal, ref: str, *, force: bool = False
) -> Node:
    """Forget a host (admin); refused (409) while live replicas are on it, for this host
    (its worker registers it), and while replicas lost with it are not fenced yet (`unfenced`;
    `force` overrides that one)."""
    require(actor, "manage_nodes", what=f"node {ref}")
    node: Node = await one_by_ref(
        session, sa.select(Node).order_by(Node.id), Node.id, ref, "node", name_column=Node.name
    )
    if node.transport != "ssh":
        raise Conflict(
            f"node {node.name} is a host pilothouse runs on (its worker registers it): "
            "it cannot be removed",
            detail={"node": node.name, "transport": node.transport},
        )
    live = (
        await session.execute(
            sa.select(Service.name, sa.func.count())
            .join(Replica, Replica.service_id == Service.id)
            .where(Replica.node_id == node.id, Replica.status.in_(HOLDING))
            .group_by(Service.name)
            .order_by(Service.name)
        )
    ).all()
    if live:
        count = sum(int(n) for _, n in live)
        which = ", ".join(f"{name} x{n}" for name, n in live)
        raise Conflict(
            f"node {node.name} cannot go from {node.status} to removed: {count} live "
            f"replica(s) run on it ({which}); scale them away or wait until they are replaced",
            detail={"node": node.name, "from": node.status, "to": "removed", "replicas": count},
        )
    if node.fence_pending_since is not None:
        since = f"{node.fence_pending_since:%Y-%m-%d %H:%M:%S} UTC"
        refusal = unfenced(node.name, node.status, since, force)
        if refusal is not None:
            raise Conflict(
                refusal,
                detail={"node": node.name, "from": node.status, "to": "removed", "fence": True},
            )
    audit.record(
        session,
        actor,
        "delete",
        "node",
        node.id,
        {"name": node.name, **({"unfenced": True} if node.fence_pending_since else {})},
    )
    await session.delete(node)
    await session.flush()
    return node


def access_of(node: Node, keyring: Keyring | None) -> NodeAccess:
    """How to reach `node` (its client key unsealed with `keyring`): for the drivers'
    transports (drivers/transport.TransportPool). A local node needs no keyring."""
    if node.transport != "ssh":
        return NodeAccess(
            id=node.id, name=node.name, kind="local", address=node.address or "127.0.0.1"
        )
    if keyring is None or node.private_key_sealed is None:
        raise TransportUnavailable(f"node {node.name}: its client key cannot be opened here")
    return NodeAccess(
        id=node.id,
        name=node.name,
        kind="ssh",
        address=node.address or node.hostname,
        ssh_user=node.ssh_user,
        ssh_port=node.ssh_port or 22,
        host_key=node.host_key,
        private_key=open_value(node.private_key_sealed, keyring),
    )


async def node_accesses(
    session: AsyncSession, keyring: Keyring | None, *, ids: Sequence[uuid.UUID] | None = None
) -> dict[uuid.UUID, NodeAccess]:
    """NodeAccess of every node (or of `ids`), by node id; an ssh node whose key cannot be
    opened is left out."""
    query = sa.select(Node).order_by(Node.name)
    if ids is not None:
        query = query.where(Node.id.in_(list(ids)))
    found: dict[uuid.UUID, NodeAccess] = {}
    for node in await session.scalars(query):
        try:
            found[node.id] = access_of(node, keyring)
        except (TransportUnavailable, ValueError):
            continue
    return found


async def reseal_batch(session: AsyncSession, keyring: Keyring, *, batch: int = 500) -> int:
    """Re-seal up to `batch` node client keys still sealed with an older key; returns how
    many. `keys rotate` calls it."""
    current = keyring.current.hex()
    rows = list(
        await session.scalars(
            sa.select(Node)
            .where(Node.private_key_sealed.is_not(None), Node.key_id != current)
            .limit(batch)
            .with_for_update()
        )
    )
    for node in rows:
        assert node.private_key_sealed is not None
        node.private_key_sealed = seal_value(open_value(node.private_key_sealed, keyring), keyring)
        node.key_id = current
    await session.flush()
    return len(rows)
