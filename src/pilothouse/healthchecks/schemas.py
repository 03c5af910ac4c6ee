"""Response and request bodies for health, uptime, maintenance and incidents."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from pilothouse.core.inputs import IsoDateTime


class CheckRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    target: str = Field(description="replica:<id>, url:<service>, dep:<environment>:<kind>.")
    kind: str = Field(description="http, tcp, postgres or redis.")
    timestamp: datetime = Field(description="When it ran (UTC).")
    ok: bool = Field(description="Whether it passed.")
    overall_status: str = Field(description="healthy or unhealthy for one check.")
    response_time_ms: float | None = Field(description="Latency.")
    http_status: int | None = Field(description="HTTP status, for HTTP checks.")
    detail: str | None = Field(description="What was seen (secrets masked).")


class ServiceHealth(BaseModel):
    status: str = Field(
        description="healthy, degraded, unhealthy, unknown before any check, or stopped while "
        "the service is stopped (`service stop`: not probed, not down)."
    )
    reasons: list[str] = Field(description="Why it has that status.")
    changed_at: datetime | None = Field(description="When the status last changed.")
    replicas: list[dict[str, object]] = Field(
        description="Live (running) replicas: id, status, health, port; all of them with all=true."
    )
    checks: list[CheckRead] = Field(
        description="Latest check of each target (10 minutes); replica checks only of the "
        "replicas listed."
    )


class DeploymentMark(BaseModel):
    id: uuid.UUID = Field(description="Deployment.")
    version: str = Field(description="Version.")
    status: str = Field(description="Outcome.")
    event_type: str = Field(description="deploy, rollback, scale, stop, start...")
    created_at: datetime = Field(description="When (UTC).")


class UptimeReport(BaseModel):
    service: str = Field(description="Service name.")
    month: str = Field(description="YYYY-MM.")
    start: datetime = Field(description="Start of the period.")
    end: datetime = Field(description="End of the period (now, for the current month).")
    minutes: float = Field(description="Minutes in the period.")
    downtime_minutes: float = Field(
        description="Downtime; maintenance windows and stopped time excluded."
    )
    stopped_minutes: float = Field(
        default=0.0,
        description="Minutes the service was stopped (`service stop`): not counted as downtime.",
    )
    uptime_percent: float = Field(description="(minutes - downtime) / minutes x 100.")
    sla_target: float = Field(description="The service's SLA target, percent.")
    sla_met: bool = Field(description="uptime_percent >= sla_target.")
    checks: int = Field(
        description="Service-level checks counted; 0 means no data for the period (the "
        "percentages then say nothing)."
    )
    p95_ms: float | None = Field(description="P95 response time (highest hourly P95).")
    avg_ms: float | None = Field(description="Average response time.")
    outages: list[tuple[datetime, datetime]] = Field(description="Downtime intervals counted.")
    deployments: list[DeploymentMark] = Field(description="Deployments in the period (timeline).")


class MaintenanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: IsoDateTime = Field(description="Start (ISO 8601 with time zone).")
    ends_at: IsoDateTime = Field(description="End, after the start.")
    reason: str | None = Field(default=None, max_length=500, description="Why.")


class MaintenanceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Window id.")
    starts_at: datetime = Field(description="Start.")
    ends_at: datetime = Field(description="End.")
    reason: str | None = Field(description="Why.")
    created_by: str = Field(description="Who declared it.")


class IncidentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Incident id.")
    service_id: uuid.UUID = Field(description="Service.")
    service: str = Field(default="", description="Service name.")
    started_at: datetime = Field(description="When the service left healthy.")
    ended_at: datetime | None = Field(description="When it recovered (null while open).")
    status: str = Field(description="Worst status seen last.")
    cause: str = Field(description="Why.")
    reminders: int = Field(description="Reminders sent.")
