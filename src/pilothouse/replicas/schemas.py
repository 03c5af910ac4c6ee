"""Response bodies for replicas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ReplicaRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Replica id.")
    service_id: uuid.UUID = Field(description="Service.")
    deployment_id: uuid.UUID | None = Field(description="Deployment that started it.")
    artifact_id: uuid.UUID | None = Field(description="Artifact it runs.")
    node_id: uuid.UUID | None = Field(description="Node it runs on.")
    version: str | None = Field(description="Version it runs.")
    status: Literal["pending", "starting", "running", "stopping", "stopped", "failed"] = Field(
        description="Lifecycle status."
    )
    health: str = Field(description="unknown, healthy, degraded or unhealthy.")
    pid: int | None = Field(description="Process id (process driver).")
    container_id: str | None = Field(description="Container id (container drivers).")
    image_digest: str | None = Field(
        description="Digest of the image the container runs (sha256:<64 hex>), the artifact's."
    )
    ports: dict[str, Any] = Field(description="Port bindings.")
    restart_count: int = Field(description="Restarts since it was created.")
    started_at: datetime | None = Field(description="Last time it became running.")
    stopped_at: datetime | None = Field(description="Last time it stopped or failed.")
    cpu_percent: float | None = Field(description="CPU use, percent.")
    memory_mb: float | None = Field(description="Memory use, MB.")
    restart_reason: str | None = Field(
        description="Why it last failed or was restarted, e.g. 'liveness: 3 failed checks: "
        "HTTP 503' or 'memory: 734 MB over the 512 MB limit for 10 s'."
    )
    enforcement: Literal["cgroup", "sampling"] | None = Field(
        description="How its CPU and memory limits are enforced: cgroup (cgroups v2) or "
        "sampling (the supervisor reads its memory and restarts it when over the limit)."
    )
