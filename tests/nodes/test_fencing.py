"""Fencing a node that returns: the processes it still runs that the store does not hold live
on it are stopped, over real SSH on a namespace host; the rule itself as a table."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse.access import SYSTEM
from pilothouse.audit.models import AuditEntry
from pilothouse.core.db import Database
from pilothouse.drivers import remote, ssh
from pilothouse.drivers.remote import RemoteReplica
from pilothouse.nodes import watch as watching
from pilothouse.replicas import service as replicas
from pilothouse.replicas.models import Node, Replica
from tests.conftest import Api, one_store
from tests.support.netns import Hosts

HERE = uuid.uuid4()
THERE = uuid.uuid4()


def _proc(rid: uuid.UUID, pid: int = 100) -> RemoteReplica:
    return RemoteReplica(rid, "rel", "v1", pid, 1.0)


@pytest.mark.parametrize(
    ("record", "pid", "stray"),
    [
        (("running", 100, HERE), 100, None),
        (("starting", None, HERE), 100, None),  # being started: no pid recorded yet
        (("stopping", 100, HERE), 100, None),
        (("failed", 100, HERE), 100, "failed"),  # lost while the node was unreachable
        (("stopped", 100, HERE), 100, "stopped"),
        (("running", 100, THERE), 100, "recorded on another node"),
        (("running", 200, HERE), 100, "an older process of the replica"),
        (None, 100, "unknown to the store"),
        # a crash restart claimed by the supervisor, placed back here: its new process runs
        # while the record is still failed with the old pid; kept
        (("failed", 100, HERE, "restarting"), 200, None),
        (("failed", 100, HERE, "restarting"), 100, "failed"),  # the old process itself
        (("failed", 100, THERE, "restarting"), 200, None),  # restarted here from another node
    ],
)
def test_strays(record: tuple[Any, ...] | None, pid: int, stray: str | None) -> None:
    rid = uuid.uuid4()
    records = {rid: record[:3]} if record is not None else {}
    restarting = {rid} if record is not None and record[3:] == ("restarting",) else set()
    found = watching.strays([_proc(rid, pid)], records, HERE, {rid: "api"}, restarting=restarting)
    assert [s.why for s in found] == ([stray] if stray else [])


@pytest.mark.parametrize(
    ("keep_running", "in_seconds", "claimed"),
    [
        (True, 3590, True),  # the supervisor's claim pushes next_restart_at an hour ahead
        (True, 30, False),  # backing off: not being restarted now
        (True, None, False),
        (False, 3590, False),  # lost or stopped: never restarted
    ],
)
def test_restart_claimed(keep_running: bool, in_seconds: int | None, claimed: bool) -> None:
    from datetime import timedelta

    from pilothouse.core.clock import utcnow

    now = utcnow()
    at = now + timedelta(seconds=in_seconds) if in_seconds is not None else None
    assert watching.restart_claimed(keep_running, at, now) is claimed


def test_fenced_text() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    stopped = [
        watching.Stray(RemoteReplica(a, "1a2b3c4d-x", "v1", 1, 1.0), "api", "failed"),
        watching.Stray(RemoteReplica(b, "1a2b3c4d-x", "v1", 2, 1.0), "api", "failed"),
    ]
    assert watching.fenced_text(stopped) == (
        "stopped 2 stray replicas: api v1 (release 1a2b3c4d) x2"
    )
    assert watching.fenced_text([]) == "no stray replicas"


@one_store
async def test_returned_node_is_fenced_over_ssh(
    netns_hosts: Callable[[int], Hosts], api: Api, world: dict[str, Any], db: Database
) -> None:
    (host,) = hosts = netns_hosts(1)
    body = {
        "name": "h1",
        "address": host.address,
        "private_key": hosts.private_key,
        "trust": host.fingerprint,
    }
    node_id = uuid.UUID(api.ok(api.post("/nodes", body), 201)["id"])
    service_id = uuid.UUID(world["service"]["id"])
    transport = ssh.SSHTransport(host.access())
    try:
        # Four replica processes on the host: live (kept), lost (failed), stopped, and one
        # whose record says it runs elsewhere now; plus one the store never heard of.
        kinds = {
            "live": "running",
            "lost": "failed",
            "gone": "stopped",
            "moved": "running",
            "alien": None,
        }
        ids = {name: uuid.uuid4() for name in kinds}
        order = remote.Order("sleep 120", "v1.0.0", {}, None, host.address)
        procs = await asyncio.gather(
            *(remote.start(transport, node_id, ids[n], "1a2b3c4d-rel", order) for n in kinds)
        )
        started: dict[str, tuple[uuid.UUID, int]] = {}
        async with db.session() as session:
            for (name, status), proc in zip(kinds.items(), procs, strict=True):
                proc.channel.close()
                started[name] = (ids[name], proc.pid)
                if status is None:
                    continue
                rec = await replicas.create_replica(
                    session,
                    service_id,
                    actor=SYSTEM,
                    id=ids[name],
                    node_id=node_id,
                    version="v1.0.0",
                    pid=proc.pid,
                )
                steps = {"running": ["running"], "failed": ["running", "failed"]}
                for step in ["starting", *steps.get(status, ["stopping", "stopped"])]:
                    await replicas.transition(session, rec, step, actor=SYSTEM)
            moved_node = Node(name="elsewhere", hostname="elsewhere", status="ready")
            session.add(moved_node)
            await session.flush()
        async with db.session() as session:
            moved = await session.get(Replica, started["moved"][0])
            assert moved is not None
            moved.node_id = moved_node.id

        listed = {r.replica_id for r in await remote.running(transport, node_id)}
        assert listed == {rid for rid, _ in started.values()}

        stopped = await watching.on_node_returned(db, node_id, transport, grace=2)
        assert sorted(s.why for s in stopped) == [
            "failed",
            "recorded on another node",
            "stopped",
            "unknown to the store",
        ]
        left = await remote.running(transport, node_id)
        assert [(r.replica_id, r.pid) for r in left] == [started["live"]]
        assert watching.fenced_text(stopped).startswith("stopped 4 stray replicas: ")
        async with db.session(write=False) as session:
            entry = await session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "fence"))
        assert entry is not None and entry.entity_id == str(node_id)
        assert {d["replica"] for d in (entry.changes or {})["stopped"]} == {
            str(started[n][0]) for n in ("lost", "gone", "moved", "alien")
        }
        # Nothing stray left: a second pass stops nothing.
        assert await watching.on_node_returned(db, node_id, transport, grace=2) == []
    finally:
        await remote.fence(transport, set(), node_id=node_id, grace=1)
        await transport.close()
