"""Response bodies for nodes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from pilothouse.nodes.service import NodeView


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
    status: Literal["ready", "draining", "down"] = Field(
        description="Only ready nodes get replicas."
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
