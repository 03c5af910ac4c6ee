"""Response bodies for nodes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pilothouse.core.rules import NAME_RE, as_validator, check_name, schema_hint
from pilothouse.drivers.ssh import fingerprint
from pilothouse.nodes.hosts import check_address
from pilothouse.nodes.service import NodeView

Name = Annotated[
    str, AfterValidator(as_validator(check_name)), schema_hint(pattern=NAME_RE.pattern)
]


class NodeCreate(BaseModel):
    """A host reached over SSH (admin). pilothouse connects, checks the host key against
    `trust`, logs in with `private_key`, detects capacity and software, and stores the node
    with the key sealed."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique node name, 1-100 of [A-Za-z0-9_-].")
    address: Annotated[str, AfterValidator(as_validator(check_address))] = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9.:_-]+$",
        description="Host name or IPv4 address to reach it at (also where its replicas are "
        "reached from the router). IPv6 is not supported yet (422).",
    )
    ssh_user: str = Field(
        default="root", pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$", description="SSH user."
    )
    ssh_port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    private_key: str = Field(
        min_length=1,
        max_length=20000,
        description="The client private key (OpenSSH or PEM, no passphrase). Sealed with the "
        "master key when stored; never shown again.",
    )
    trust: str | None = Field(
        default=None,
        pattern=r"^SHA256:[A-Za-z0-9+/]{43}$",
        description="The host key's SHA256 fingerprint you checked on the host. Required: "
        "without it (first contact) the refusal shows the fingerprint the host presents.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels (an environment's node_labels select on them)."
    )


class Amounts(BaseModel):
    """Resources in the services' field names."""

    cpu_cores: float = Field(description="CPU cores.")
    memory_mb: float = Field(description="Memory, MB.")
    gpu_units: float = Field(description="GPUs.")
    storage_gb: float = Field(description="Storage, GB.")


class NodeRead(BaseModel):
    id: uuid.UUID = Field(description="Node id.")
    name: str = Field(description="Unique name (`local` for the host pilothouse runs on).")
    hostname: str = Field(description="Host name.")
    status: Literal["ready", "draining", "down", "unreachable"] = Field(
        description="Only ready nodes get replicas; an ssh node that stops answering is "
        "unreachable."
    )
    status_reason: str | None = Field(description="Why it is not ready (the last probe).")
    transport: Literal["local", "ssh"] = Field(
        description="How it is reached: local (a host pilothouse runs on) or ssh."
    )
    address: str | None = Field(description="Where it and its replicas are reached.")
    ssh_user: str | None = Field(description="SSH user (ssh nodes).")
    ssh_port: int | None = Field(description="SSH port (ssh nodes).")
    host_key_fingerprint: str | None = Field(
        description="SHA256 fingerprint of the trusted host key (ssh nodes)."
    )
    software: dict[str, Any] = Field(
        description="What the drivers need, found when it was added: python3, podman versions."
    )
    labels: dict[str, str] = Field(
        description="Labels (an environment's node_labels select on them)."
    )
    capacity: Amounts = Field(description="What the node offers (detected, or overridden).")
    allocated: Amounts = Field(
        description="What its live replicas hold: the sum of their services' resources."
    )
    free: Amounts = Field(description="capacity minus allocated.")
    replicas: int = Field(description="Live replicas (pending, starting, running, stopping) on it.")
    last_seen_at: datetime | None = Field(description="Last time its worker refreshed it.")

    @classmethod
    def of(cls, view: NodeView) -> NodeRead:
        node = view.node
        return cls(
            id=node.id,
            name=node.name,
            hostname=node.hostname,
            status=node.status,
            status_reason=node.status_reason,
            transport=node.transport,
            address=node.address,
            ssh_user=node.ssh_user,
            ssh_port=node.ssh_port,
            host_key_fingerprint=fingerprint(node.host_key) if node.host_key else None,
            software=dict(node.software or {}),
            labels={str(k): str(v) for k, v in (node.labels or {}).items()},
            capacity=Amounts(**view.capacity.as_dict()),
            allocated=Amounts(**view.allocated.as_dict()),
            free=Amounts(**view.free.as_dict()),
            replicas=view.replicas,
            last_seen_at=node.last_seen_at,
        )


class NodeReplica(BaseModel):
    id: uuid.UUID = Field(description="Replica id.")
    service: str = Field(description="Service name.")
    status: str = Field(description="Lifecycle status.")
    version: str | None = Field(description="Version it runs.")
    container_id: str | None = Field(description="Container id (container driver).")


class NodeDetail(NodeRead):
    replica_list: list[NodeReplica] = Field(description="Live replicas on it you may see.")
