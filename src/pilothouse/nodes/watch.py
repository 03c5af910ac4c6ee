"""Host failure detection: probe every ssh node; a silent one becomes `unreachable`.

Every PROBE_EVERY seconds each worker claims the nodes it probes for that slot (one job_slots
row per node and slot: one worker per node per period, whichever wins) and echoes a line through
a `cat` kept running on each (one channel per node, so no shell start per probe), all at once,
each bounded by `probe_timeout`. An answer refreshes the
node's `last_seen_at`. The decision is hosts.verdict:

- **lost**: a ready (or draining) node that has not answered for `node_unreachable_after`
  seconds becomes `unreachable` (status_reason says since when and why); its live replicas are
  marked `failed` ("lost: node NAME unreachable") and leave the live set; each affected service
  with a live release gets a replacement rollout (a `scale` deployment of the same version and
  target, as `service scale` records one), which the engine places on the remaining ready
  nodes; one `node_unreachable` alert goes to every active channel.
- **returned**: an unreachable node that answers is `ready` again, `on_node_returned` fences it
  (stops every replica process and removes every running pilothouse container there that the
  store does not hold live on it: `strays`), and one `node_ready` alert, saying what was
  stopped, resolves the first.

The status change is made under the node's row lock after reading it again, so only the worker
that flips it acts (replicas, replacements, alert), however many probe.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pilothouse.access import Principal
from pilothouse.alerts.service import notify
from pilothouse.artifacts import service as artifacts
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import CryptoError, Keyring
from pilothouse.core.db import Database
from pilothouse.core.keys import process_keyring
from pilothouse.core.leases import JobSlot, Leases, slot_start
from pilothouse.core.logging import get_logger
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import ACTIVE_STATUSES, Deployment
from pilothouse.deployments.supervisor import BACKOFF_MAX
from pilothouse.drivers import remote, ssh
from pilothouse.drivers.container import EngineMissing, containers_on, remove_on, replica_of
from pilothouse.drivers.transport import (
    Channel,
    NodeAccess,
    Transport,
    TransportPool,
    TransportUnavailable,
)
from pilothouse.errors import PilothouseError
from pilothouse.nodes import hosts
from pilothouse.nodes.service import HOLDING, access_of
from pilothouse.replicas import service as replicas
from pilothouse.replicas.models import Node, Replica
from pilothouse.services.models import Service

log = get_logger("pilothouse.nodes")

PROBE_EVERY = 3.0
PROBE_JOB = "nodes.probe"
MONITOR = "node-monitor"


LOST_PREFIX = "lost: node "
#: Replacements of replicas lost with a node are requested again for this long (seconds).
REPLACE_RETRY_FOR = 3600.0
REPLACE_JOB = "nodes.replace"


def lost_reason(node: str) -> str:
    """Why a replica on a lost node failed."""
    return f"{LOST_PREFIX}{node} unreachable"


@dataclass(frozen=True)
class Outcome:
    """What one probe round changed (for the log, the alert and the tests)."""

    node: str
    verdict: hosts.Verdict
    failed_replicas: int = 0
    replacements: list[str] = field(default_factory=list)  # "api: deployment <id>"
    not_replaced: list[str] = field(default_factory=list)  # "api: <why>"
    fence: bool = False  # the node answers and its fencing is pending: fence it now


FENCE_GRACE = 10.0


@dataclass(frozen=True)
class Stray:
    """A replica process (or container) found on a returned node that the store does not hold
    live there."""

    replica: remote.RemoteReplica
    service: str  # the service's name, "?" when the store has no record of the replica
    why: str  # "failed", "stopped", "another process", "unknown", ...
    container: str | None = None  # the container's id when the replica is a container


def restart_claimed(keep_running: bool, next_restart_at: datetime | None, now: datetime) -> bool:
    """Whether the supervisor is restarting a failed replica right now: its claim
    (deployments/supervisor.py `_claim_restart`) pushes `next_restart_at` an hour ahead, further
    than any backoff (at most BACKOFF_MAX seconds); a replica lost with its node is never
    restarted (`keep_running` off)."""
    return (
        keep_running
        and next_restart_at is not None
        and next_restart_at > now + timedelta(seconds=2 * BACKOFF_MAX)
    )


def strays(
    found: list[remote.RemoteReplica],
    records: dict[uuid.UUID, tuple[str, int | None, uuid.UUID | None]],
    node_id: uuid.UUID,
    services: dict[uuid.UUID, str] | None = None,
    *,
    restarting: set[uuid.UUID] | frozenset[uuid.UUID] = frozenset(),
) -> list[Stray]:
    """Which of the processes listed on a node to stop (pure). `records` maps a replica id to
    its store record: (status, pid, node id). A process is kept only when its replica is live
    (pending/starting/running/stopping) on THIS node and is this very process (same pid, or no
    pid recorded yet: it is being started), or when the supervisor is restarting the replica
    (`restarting`: `restart_claimed`) and the process is not the recorded one (its record is
    still failed with the old pid while the new process starts, here or moved here); anything
    else is stray: a replica marked failed (lost) or stopped, one now recorded on another node,
    an older process of the replica, one the store does not know."""
    names = services or {}
    out = []
    for proc in found:
        record = records.get(proc.replica_id)
        if record is None:
            out.append(Stray(proc, "?", "unknown to the store"))
            continue
        status, pid, where = record
        name = names.get(proc.replica_id, "?")
        if status == "failed" and proc.replica_id in restarting and pid != proc.pid:
            continue
        if status not in HOLDING:
            out.append(Stray(proc, name, status))
        elif where != node_id:
            out.append(Stray(proc, name, "recorded on another node"))
        elif pid is not None and pid != proc.pid:
            out.append(Stray(proc, name, "an older process of the replica"))
    return out


def fenced_text(stopped: list[Stray]) -> str:
    """`stopped 2 stray replicas: api v1.0.0 (release 1a2b3c4d) x2` (or nothing stopped)."""
    if not stopped:
        return "no stray replicas"
    groups: dict[str, int] = {}
    for s in stopped:
        key = f"{s.service} {s.replica.version} (release {s.replica.release_id[:8]})"
        groups[key] = groups.get(key, 0) + 1
    what = ", ".join(f"{k} x{n}" for k, n in groups.items())
    plural = "replica" if len(stopped) == 1 else "replicas"
    return f"stopped {len(stopped)} stray {plural}: {what}"


async def on_node_returned(
    db: Database,
    node_id: uuid.UUID,
    transport: Transport,
    *,
    grace: float = FENCE_GRACE,
    engine: str = "podman",
    runtime: str | None = "runc",
) -> list[Stray]:
    """Fencing, once an unreachable node answers again (after it is `ready`, before the
    `node_ready` alert): its replicas were marked failed and replaced meanwhile, but their
    processes may still run there. List every pilothouse replica on the node (the shims'
    processes, and the running containers by the node's label; no `engine` there: no
    containers), read the store AFTER the listing (a replica started meanwhile already has its
    record), and stop every one that is not a live replica recorded on this node (`strays`):
    a process by its pid and start time (drivers/remote.py), a container by `rm --force`
    (drivers/container.py). What was stopped is logged and audited; returned for the alert."""
    found = await remote.running(transport, node_id)
    boxes = await _containers(transport, node_id, engine, runtime)
    if not found and not boxes:
        return []
    ids = [r.replica_id for r in found] + [r.replica_id for r in boxes.values()]
    async with db.session(write=False) as session:
        rows = (
            await session.execute(
                sa.select(
                    Replica.id,
                    Replica.status,
                    Replica.pid,
                    Replica.node_id,
                    Service.name,
                    Replica.keep_running,
                    Replica.next_restart_at,
                )
                .join(Service, Service.id == Replica.service_id)
                .where(Replica.id.in_(ids))
            )
        ).all()
    records = {row[0]: (row[1], row[2], row[3]) for row in rows}
    names = {row[0]: row[4] for row in rows}
    now = utcnow()
    restarting = {row[0] for row in rows if restart_claimed(row[5], row[6], now)}
    procs = strays(found, records, node_id, names, restarting=restarting)
    by_pid = {r.pid: cid for cid, r in boxes.items()}
    held = [
        Stray(s.replica, s.service, s.why, by_pid[s.replica.pid])
        for s in strays(list(boxes.values()), records, node_id, names, restarting=restarting)
    ]
    if not procs and not held:
        return []
    stopped: list[Stray] = []
    if procs:
        pids = set(
            await remote.stop_many(
                transport, [(s.replica.pid, s.replica.started_at) for s in procs], grace
            )
        )
        stopped += [s for s in procs if s.replica.pid in pids]
    if held:
        containers = [s.container for s in held if s.container]
        await remove_on(transport, containers, engine=engine, runtime=runtime, grace=grace)
        stopped += held
    if stopped:
        detail = [
            {
                "replica": str(s.replica.replica_id),
                "service": s.service,
                "release": s.replica.release_id,
                "version": s.replica.version,
                "pid": s.replica.pid,
                **({"container": s.container} if s.container else {}),
                "why": s.why,
            }
            for s in stopped
        ]
        monitor = Principal(id=uuid.UUID(int=0), name=MONITOR, role="admin")
        async with db.session() as session:
            audit.record(session, monitor, "fence", "node", node_id, {"stopped": detail})
        log.warning("stray replicas stopped", node=transport.node, stopped=detail)
    return stopped


async def _containers(
    transport: Transport, node_id: uuid.UUID, engine: str, runtime: str | None
) -> dict[str, remote.RemoteReplica]:
    """The node's running pilothouse containers by container id; none when the engine is not
    installed there (a node that runs processes only)."""
    try:
        listed = await containers_on(transport, node_id, engine=engine, runtime=runtime)
    except EngineMissing:
        return {}
    found = {}
    for container in listed:
        replica = replica_of(container) if container.running and container.pid else None
        if replica is not None:
            found[container.id] = replica
    return found


def _keyring() -> Keyring | None:
    try:
        return process_keyring()
    except CryptoError:
        return None


class NodeWatch:
    """The probe loop's state: its own transports (short connect timeout) and settings."""

    def __init__(
        self,
        db: Database,
        leases: Leases,
        *,
        unreachable_after: float,
        probe_timeout: float | None = None,
        keyring: Callable[[], Keyring | None] = _keyring,
        engine: str = "podman",
        runtime: str | None = "runc",
        probe_every: float = PROBE_EVERY,
    ) -> None:
        self.db = db
        self.every = probe_every  # the slot length; nodes/loops.py ticks the watch this often
        self.leases = leases
        self.after = unreachable_after
        self.timeout = probe_timeout or max(1.0, min(5.0, unreachable_after / 3))
        self.keyring = keyring
        self.engine, self.runtime = engine, runtime  # the container engine on the nodes
        self.pool = TransportPool(self._transport)
        self._echo: dict[uuid.UUID, tuple[Transport, Channel]] = {}  # node id -> probe channel

    def _transport(self, access: NodeAccess) -> Transport:
        return ssh.SSHTransport(
            access,
            connect_timeout=self.timeout,
            keepalive=max(1.0, self.timeout),
            backoff_cap=max(self.timeout, self.every),
        )

    async def _probe(self, access: NodeAccess) -> str | None:
        """None when the node answered, else why not. The probe is a line echoed by `cat` on a
        channel kept open per node: over SSH every command starts the user's login shell (rc
        files and all), so a new command every PROBE_EVERY seconds per node would cost that
        each time; the echo proves the host, its sshd and a process there answer. A channel
        that ended is started again at once (once); one that times out is dropped."""
        transport = self.pool.get(access)
        for attempt in (1, 2):
            held = self._echo.get(access.id)
            fresh = held is None or held[0] is not transport
            try:
                if held is None or held[0] is not transport:
                    self._forget(access.id)
                    channel = await asyncio.wait_for(transport.start(["cat"]), self.timeout)
                    held = self._echo[access.id] = (transport, channel)
                await held[1].write(b".\n")
                line = await asyncio.wait_for(held[1].readline(), self.timeout)
            except TimeoutError:
                self._forget(access.id)
                return f"no answer within {self.timeout:g} s"
            except (TransportUnavailable, ValueError) as exc:
                self._forget(access.id)
                return str(exc) or type(exc).__name__
            except (OSError, RuntimeError, EOFError):
                line = b""
            except BaseException:  # cancelled mid-probe: a late echo would answer the next one
                self._forget(access.id)
                raise
            if line == b".\n":
                return None
            self._forget(access.id)
            if fresh or attempt == 2:
                return "the probe channel ended at once"
        return None

    def _forget(self, node_id: uuid.UUID) -> None:
        held = self._echo.pop(node_id, None)
        if held is not None:
            held[1].close()

    async def tick(self, now: datetime | None = None) -> list[Outcome]:
        """Probe the ssh nodes this worker claims for the current slot; act on what changed."""
        now = now or utcnow()
        async with self.db.session(write=False) as session:
            nodes = list(await session.scalars(sa.select(Node).where(Node.transport == "ssh")))
        for gone in set(self._echo) - {n.id for n in nodes}:  # removed: its channel ends
            self._forget(gone)
        if not nodes:
            return []
        slot = slot_start(now, timedelta(seconds=self.every))
        claims = [{"job": PROBE_JOB, "key": str(n.id), "slot": slot} for n in nodes]
        won = {str(key) for _job, key, *_ in await self.leases.claim_slots(JobSlot, claims)}
        keyring = self.keyring()
        mine: list[tuple[Node, NodeAccess]] = []
        for node in nodes:
            if str(node.id) not in won:
                continue
            try:
                mine.append((node, access_of(node, keyring)))
            except (TransportUnavailable, CryptoError, ValueError) as exc:
                log.warning("node not probed", node=node.name, reason=str(exc))
        causes = await asyncio.gather(*(self._probe(access) for _, access in mine))
        outcomes = []
        for (node, access), cause in zip(mine, causes, strict=True):
            outcome = await self.settle(node.id, cause, utcnow())
            if outcome is not None:
                outcomes.append(outcome)
                await self._after(outcome, node.id, access)
        if await self._claim(REPLACE_JOB, now):
            await self.replace_short()
        return outcomes

    async def _claim(self, job: str, now: datetime) -> bool:
        slot = slot_start(now, timedelta(seconds=self.every))
        won = await self.leases.claim_slots(JobSlot, [{"job": job, "key": "-", "slot": slot}])
        return bool(won)

    async def replace_short(self) -> list[str]:
        """Replacements not made when their node was lost (a rollout was in progress, or they
        did not fit) are requested again: every service with replicas lost with a node in the
        last REPLACE_RETRY_FOR seconds that holds fewer replicas than its target (live, or
        failed and due for a restart), has no rollout in progress and got no replacement rollout
        since its last loss (one that was made and failed is not made again) gets the
        replacement `_lose` would have made. Returns what was requested ("api: deployment
        <id>")."""
        since = utcnow() - timedelta(seconds=REPLACE_RETRY_FOR)
        held = sa.or_(
            Replica.status.in_(HOLDING),
            sa.and_(Replica.status == "failed", Replica.keep_running.is_(True)),
        )
        count = (
            sa.select(sa.func.count())
            .where(Replica.service_id == Service.id, held)
            .correlate(Service)
            .scalar_subquery()
        )
        busy = sa.exists().where(
            Deployment.service_id == Service.id, Deployment.status.in_(ACTIVE_STATUSES)
        )
        lost_at = (
            sa.select(sa.func.max(Replica.updated_at))
            .where(
                Replica.service_id == Service.id,
                Replica.status == "failed",
                Replica.keep_running.is_(False),
                Replica.restart_reason.like(f"{LOST_PREFIX}%"),
            )
            .correlate(Service)
            .scalar_subquery()
        )
        replaced = sa.exists().where(  # one replacement per loss: a failed one is not redone
            Deployment.service_id == Service.id,
            Deployment.event_type == "scale",
            Deployment.triggered_by == "automated",
            Deployment.commit_message.like("replace %"),
            Deployment.created_at >= lost_at,
        )
        requested: list[str] = []
        async with self.db.session() as session:
            short = list(
                await session.scalars(
                    sa.select(Service)
                    .where(
                        Service.deleted_at.is_(None),
                        Service.status.not_in(("stopped", "deleted")),
                        lost_at >= since,
                        ~replaced,
                        ~busy,
                        count < Service.target_replicas,
                    )
                    .order_by(Service.name)
                )
            )
            for svc in short:
                done, why = await _replace(session, svc, "replicas lost with their node")
                if done is not None:
                    requested.append(done)
                    log.info("lost replicas replaced", service=svc.name, request=done)
                else:
                    log.debug("lost replicas still not replaced", service=svc.name, reason=why)
        return requested

    async def settle(self, node_id: uuid.UUID, cause: str | None, now: datetime) -> Outcome | None:
        """Apply one probe's outcome to the node (row locked, read again); None when the
        node is gone."""
        async with self.db.session() as session:
            node = await session.scalar(sa.select(Node).where(Node.id == node_id).with_for_update())
            if node is None:
                return None
            what = hosts.verdict(
                status=node.status,
                answered=cause is None,
                last_seen_at=node.last_seen_at,
                now=now,
                after=self.after,
            )
            if what in ("seen", "returned"):
                node.last_seen_at = now
                if node.status in ("ready", "draining", "unreachable"):
                    node.status_reason = None
            if what == "returned":
                node.status, node.status_reason = "ready", None
                # committed with `ready`: a fencing that fails, or a worker that dies before
                # it, leaves the mark, and every later probe that is answered fences again
                node.fence_pending_since = node.fence_pending_since or now
                log.info("node answers again", node=node.name)
            if what == "silent" and node.status in ("ready", "draining"):
                node.status_reason = f"no answer: {cause}"[:500]
            if what != "lost":
                fence = node.fence_pending_since is not None and node.status in (
                    "ready",
                    "draining",
                )
                return Outcome(node.name, what, fence=fence and what in ("seen", "returned"))
            since = f"{node.last_seen_at:%H:%M:%S} UTC" if node.last_seen_at else "it was added"
            node.status = "unreachable"
            node.status_reason = f"no answer since {since}: {cause}"[:500]
            log.warning("node unreachable", node=node.name, reason=node.status_reason)
            return await _lose(session, node)

    async def _fence(self, node_id: uuid.UUID, name: str, access: NodeAccess) -> str:
        """Fence the node (`on_node_returned`); once it succeeded, clear its pending mark
        (unless it was lost again meanwhile). What fencing did, for the alert."""
        try:
            stopped = await on_node_returned(
                self.db, node_id, self.pool.get(access), engine=self.engine, runtime=self.runtime
            )
        except Exception as exc:  # fencing failing must not hide the node's return
            log.error("on_node_returned failed", node=name, exc_info=exc)
            why = f"{type(exc).__name__}: {exc}"
            return f"fencing failed (retried at the next probe): {why}"[:300]
        async with self.db.session() as session:
            await session.execute(
                sa.update(Node)
                .where(Node.id == node_id, Node.status.in_(("ready", "draining")))
                .values(fence_pending_since=None)
            )
        return fenced_text(stopped or [])

    async def _after(self, outcome: Outcome, node_id: uuid.UUID, access: NodeAccess) -> None:
        fencing: str | None = None
        if outcome.fence:
            fencing = await self._fence(node_id, outcome.node, access)
        if outcome.verdict in ("lost", "returned"):
            message = alert(outcome, access, self.after, fencing=fencing)
            try:
                await notify(self.db, message, keyring=self.keyring())
            except Exception as exc:  # the status is changed: the alert is logged if it fails
                log.error("node alert failed", node=outcome.node, exc_info=exc)

    async def close(self) -> None:
        for node_id in list(self._echo):
            self._forget(node_id)
        await self.pool.close()


async def _lose(session: Any, node: Node) -> Outcome:
    """Fail the node's live replicas and request replacements of each affected service."""
    reason = lost_reason(node.name)
    lost = list(
        await session.scalars(
            sa.select(Replica)
            .where(Replica.node_id == node.id, Replica.status.in_(HOLDING))
            .order_by(Replica.created_at)
            .with_for_update()
        )
    )
    monitor = Principal(id=uuid.UUID(int=0), name=MONITOR, role="admin")
    for replica in lost:
        replica.keep_running = False
        replica.restart_reason = reason
        replica.next_restart_at = None
        await replicas.transition(session, replica, "failed", actor=monitor, reason=reason)
    if lost:
        node.fence_pending_since = node.fence_pending_since or utcnow()
    outcome = Outcome(node.name, "lost", failed_replicas=len(lost))
    for service_id in dict.fromkeys(r.service_id for r in lost):
        svc = await session.get(Service, service_id)
        if svc is None or svc.deleted_at is not None or svc.status in ("stopped", "deleted"):
            continue
        done, why = await _replace(session, svc, reason)
        if done is not None:
            outcome.replacements.append(done)
        else:
            outcome.not_replaced.append(f"{svc.name}: {why}")
            log.warning("lost replicas not replaced", service=svc.name, reason=why)
    return outcome


async def _replace(session: Any, svc: Service, reason: str) -> tuple[str | None, str]:
    """Request a replacement rollout of the service's live release (a `scale` deployment of
    the same version and target): ("api: deployment <id>", "") or (None, why not)."""
    live = await artifacts.get_deployed(session, svc.id)
    if live is None:
        return None, "no live release"
    owner = Principal(id=svc.owner_id, name=MONITOR, role="admin")
    try:
        async with session.begin_nested():
            deployment = await deployments.create_deployment(
                session,
                owner,
                service=str(svc.id),
                version=live.version,
                event_type="scale",
                triggered_by="automated",
                commit_message=f"replace {reason}",
            )
    except PilothouseError as exc:
        return None, exc.message
    return f"{svc.name}: deployment {deployment.id}", ""


def alert(
    outcome: Outcome, access: NodeAccess, after: float, *, fencing: str | None = None
) -> dict[str, Any]:
    """The `node_unreachable` / `node_ready` message for the alert channels; `fencing` says
    what fencing did on a returned node."""
    where = f"{access.ssh_user}@{access.address}:{access.ssh_port}"
    if outcome.verdict == "returned":
        text = f"node {outcome.node} ({where}) answers again and is ready"
        return {
            "event": "node_ready",
            "severity": "info",
            "node": outcome.node,
            "address": where,
            "fencing": fencing,
            "text": f"{text}; {fencing}" if fencing else text,
        }
    replaced = "; ".join(outcome.replacements) or "none"
    text = (
        f"node {outcome.node} ({where}) has not answered for {after:g} s and is unreachable: "
        f"{outcome.failed_replicas} replica(s) lost; replacements requested: {replaced}"
    )
    if outcome.not_replaced:
        text += f"; not replaced: {'; '.join(outcome.not_replaced)}"
    return {
        "event": "node_unreachable",
        "severity": "critical",
        "node": outcome.node,
        "address": where,
        "replicas_lost": outcome.failed_replicas,
        "replacements": outcome.replacements,
        "not_replaced": outcome.not_replaced,
        "text": text,
    }
