"""Host failure detection: probe every ssh node; a silent one becomes `unreachable`.

Every PROBE_EVERY seconds each worker claims the nodes it probes for that slot (one job_slots
row per node and slot: one worker per node per period, whichever wins) and runs `true` on each
through its transport, all at once, each bounded by `probe_timeout`. An answer refreshes the
node's `last_seen_at`. The decision is hosts.verdict:

- **lost**: a ready (or draining) node that has not answered for `node_unreachable_after`
  seconds becomes `unreachable` (status_reason says since when and why); its live replicas are
  marked `failed` ("lost: node NAME unreachable") and leave the live set; each affected service
  with a live release gets a replacement rollout (a `scale` deployment of the same version and
  target, as `service scale` records one), which the engine places on the remaining ready
  nodes; one `node_unreachable` alert goes to every active channel.
- **returned**: an unreachable node that answers is `ready` again, `on_node_returned` runs (the
  fencing of stray replicas hooks in there), and one `node_ready` alert resolves the first.

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
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import CryptoError, Keyring
from pilothouse.core.db import Database
from pilothouse.core.keys import process_keyring
from pilothouse.core.leases import JobSlot, Leases, slot_start
from pilothouse.core.logging import get_logger
from pilothouse.deployments import service as deployments
from pilothouse.drivers import ssh
from pilothouse.drivers.transport import NodeAccess, Transport, TransportPool, TransportUnavailable
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


def lost_reason(node: str) -> str:
    """Why a replica on a lost node failed."""
    return f"lost: node {node} unreachable"


@dataclass(frozen=True)
class Outcome:
    """What one probe round changed (for the log, the alert and the tests)."""

    node: str
    verdict: hosts.Verdict
    failed_replicas: int = 0
    replacements: list[str] = field(default_factory=list)  # "api: deployment <id>"
    not_replaced: list[str] = field(default_factory=list)  # "api: <why>"


async def on_node_returned(db: Database, node_id: uuid.UUID, transport: Transport) -> None:
    """Called once when an unreachable node answers again (after it is `ready`, before the
    `node_ready` alert). The replicas it ran were marked failed and replaced meanwhile, but
    their processes may still run there: this is where fencing stops them (by release and
    replica id, drivers/remote.py). Nothing yet."""
    return None


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
    ) -> None:
        self.db = db
        self.leases = leases
        self.after = unreachable_after
        self.timeout = probe_timeout or max(1.0, min(5.0, unreachable_after / 3))
        self.keyring = keyring
        self.pool = TransportPool(self._transport)

    def _transport(self, access: NodeAccess) -> Transport:
        return ssh.SSHTransport(
            access,
            connect_timeout=self.timeout,
            keepalive=max(1.0, self.timeout),
            backoff_cap=max(self.timeout, PROBE_EVERY),
        )

    async def _probe(self, access: NodeAccess) -> str | None:
        """None when the node answered, else why not."""
        try:
            done = await self.pool.get(access).run(["true"], timeout=self.timeout)
        except (TransportUnavailable, TimeoutError, ValueError) as exc:
            return str(exc) or f"no answer within {self.timeout:g} s"
        return None if done.exit_status == 0 else f"`true` exited with {done.exit_status}"

    async def tick(self, now: datetime | None = None) -> list[Outcome]:
        """Probe the ssh nodes this worker claims for the current slot; act on what changed."""
        now = now or utcnow()
        async with self.db.session(write=False) as session:
            nodes = list(await session.scalars(sa.select(Node).where(Node.transport == "ssh")))
        if not nodes:
            return []
        slot = slot_start(now, timedelta(seconds=PROBE_EVERY))
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
        return outcomes

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
                log.info("node answers again", node=node.name)
            if what == "silent" and node.status in ("ready", "draining"):
                node.status_reason = f"no answer: {cause}"[:500]
            if what != "lost":
                return Outcome(node.name, what)
            since = f"{node.last_seen_at:%H:%M:%S} UTC" if node.last_seen_at else "it was added"
            node.status = "unreachable"
            node.status_reason = f"no answer since {since}: {cause}"[:500]
            log.warning("node unreachable", node=node.name, reason=node.status_reason)
            return await _lose(session, node)

    async def _after(self, outcome: Outcome, node_id: uuid.UUID, access: NodeAccess) -> None:
        if outcome.verdict == "returned":
            try:
                await on_node_returned(self.db, node_id, self.pool.get(access))
            except Exception as exc:  # fencing failing must not hide the node's return
                log.error("on_node_returned failed", node=outcome.node, exc_info=exc)
        if outcome.verdict in ("lost", "returned"):
            try:
                await notify(self.db, alert(outcome, access, self.after), keyring=self.keyring())
            except Exception as exc:  # the status is changed: the alert is logged if it fails
                log.error("node alert failed", node=outcome.node, exc_info=exc)

    async def close(self) -> None:
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
    outcome = Outcome(node.name, "lost", failed_replicas=len(lost))
    for service_id in dict.fromkeys(r.service_id for r in lost):
        svc = await session.get(Service, service_id)
        if svc is None or svc.deleted_at is not None or svc.status in ("stopped", "deleted"):
            continue
        live = await artifacts.get_deployed(session, svc.id)
        if live is None:
            outcome.not_replaced.append(f"{svc.name}: no live release")
            continue
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
            outcome.not_replaced.append(f"{svc.name}: {exc.message}")
            log.warning("lost replicas not replaced", service=svc.name, reason=exc.message)
            continue
        outcome.replacements.append(f"{svc.name}: deployment {deployment.id}")
    return outcome


def alert(outcome: Outcome, access: NodeAccess, after: float) -> dict[str, Any]:
    """The `node_unreachable` / `node_ready` message for the alert channels."""
    where = f"{access.ssh_user}@{access.address}:{access.ssh_port}"
    if outcome.verdict == "returned":
        return {
            "event": "node_ready",
            "severity": "info",
            "node": outcome.node,
            "address": where,
            "text": f"node {outcome.node} ({where}) answers again and is ready",
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
