"""Nodes and replicas (seed 004 DeploymentReplica, seed 001 Service Instance)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.db import Base, Timestamps, UUIDPk
from pilothouse.core.types import str_enum

REPLICA_STATUSES = ("pending", "starting", "running", "stopping", "stopped", "failed")
HEALTH_STATES = ("unknown", "healthy", "degraded", "unhealthy")
NODE_STATUSES = ("ready", "draining", "down", "unreachable")
NODE_TRANSPORTS = ("local", "ssh")


class Node(UUIDPk, Timestamps, Base):
    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    hostname: Mapped[str] = mapped_column(sa.String(253))
    address: Mapped[str | None] = mapped_column(sa.String(253), default=None)
    status: Mapped[str] = mapped_column(
        str_enum(*NODE_STATUSES, name="node_status"), default="ready"
    )
    # cpu_cores, memory_mb, gpu_units, storage_gb: the services' resource field names
    capacity: Mapped[dict[str, Any]] = mapped_column(default=dict)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    # How the node is reached (drivers/transport.py): "local" (this host) or "ssh".
    transport: Mapped[str] = mapped_column(
        str_enum(*NODE_TRANSPORTS, name="node_transport"), default="local"
    )
    ssh_user: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    ssh_port: Mapped[int | None] = mapped_column(default=None)
    # The trusted host key (an OpenSSH public key line) and the client key sealed with the
    # keyring (core/crypto.seal_value; `key_id` names the key): never shown anywhere.
    host_key: Mapped[str | None] = mapped_column(sa.Text, default=None)
    private_key_sealed: Mapped[str | None] = mapped_column(sa.Text, default=None)
    key_id: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    # What was found on the host when it was added: {"python3": "3.11.2", "podman": null}.
    software: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Why the node is not ready (the last probe's failure), shown with its status.
    status_reason: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    # Since when replicas lost with the node may still run there unfenced (nodes/watch.py
    # fences it once it answers and clears this; `node remove` is refused meanwhile).
    fence_pending_since: Mapped[datetime | None] = mapped_column(default=None)


class Replica(UUIDPk, Timestamps, Base):
    __tablename__ = "replicas"
    __table_args__ = (sa.Index("ix_replicas_service_status", "service_id", "status"),)

    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"))
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("deployments.id"), default=None
    )
    artifact_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("artifacts.id"), default=None
    )
    node_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("nodes.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[str] = mapped_column(
        str_enum(*REPLICA_STATUSES, name="replica_status"), default="pending"
    )
    health: Mapped[str] = mapped_column(
        str_enum(*HEALTH_STATES, name="health_state"), default="unknown"
    )
    pid: Mapped[int | None] = mapped_column(default=None)
    process_started_at: Mapped[float | None] = mapped_column(sa.Float, default=None)
    container_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    # The image digest the container runs (`sha256:` + 64 hex), checked against the artifact's.
    image_digest: Mapped[str | None] = mapped_column(sa.String(71), default=None)
    ports: Mapped[dict[str, Any]] = mapped_column(default=dict)
    restart_count: Mapped[int] = mapped_column(default=0)
    last_restart_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    cpu_percent: Mapped[float | None] = mapped_column(sa.Float, default=None)
    memory_mb: Mapped[float | None] = mapped_column(sa.Float, default=None)
    version: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    log_path: Mapped[str | None] = mapped_column(sa.String(1000), default=None)
    exit_code: Mapped[int | None] = mapped_column(default=None)
    # True while the replica belongs to the live set: the supervisor restarts it if it dies.
    keep_running: Mapped[bool] = mapped_column(default=False)
    next_restart_at: Mapped[datetime | None] = mapped_column(default=None)
    # Replica lifecycle (replicas/lifecycle.py): why it last failed or was restarted, how its
    # limits are enforced ("cgroup" or "sampling"), since when it is over its memory limit.
    restart_reason: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    enforcement: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    memory_over_since: Mapped[datetime | None] = mapped_column(default=None)
