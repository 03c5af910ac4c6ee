"""Health monitoring tables: checks (24 h), hourly rollups (90 days), derived state, downtime,
maintenance windows and incidents (notification channels live in alerts/)."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, UUIDPk
from pilothouse.core.types import JSONType, str_enum

HEALTH = ("healthy", "degraded", "unhealthy")
DEP_STATUS = ("connected", "slow", "disconnected")


class HealthCheck(UUIDPk, Base):
    """One probe run (seed 000 HealthCheck fields; app-reported figures when available)."""

    __tablename__ = "health_checks"
    __table_args__ = (
        sa.Index("ix_health_checks_target_timestamp", "target", "timestamp"),
        sa.Index("ix_health_checks_service_timestamp", "service_id", "timestamp"),
        sa.Index("ix_health_checks_environment_status", "environment_id", "overall_status"),
    )

    service_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("services.id"), default=None)
    replica_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("environments.id"), default=None
    )
    target: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(20))  # http, tcp, postgres, redis, tls
    instance_id: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column()
    overall_status: Mapped[str] = mapped_column(str_enum(*HEALTH, name="health_status"))
    response_time_ms: Mapped[float | None] = mapped_column(sa.Float, default=None)
    http_status: Mapped[int | None] = mapped_column(default=None)
    detail: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    database_status: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    database_response_ms: Mapped[float | None] = mapped_column(sa.Float, default=None)
    redis_status: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    redis_response_ms: Mapped[float | None] = mapped_column(sa.Float, default=None)
    memory_usage_mb: Mapped[float | None] = mapped_column(sa.Float, default=None)
    memory_usage_percent: Mapped[float | None] = mapped_column(sa.Float, default=None)
    cpu_usage_percent: Mapped[float | None] = mapped_column(sa.Float, default=None)
    uptime_seconds: Mapped[int | None] = mapped_column(default=None)
    version: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    total_requests: Mapped[int | None] = mapped_column(default=None)
    active_connections: Mapped[int | None] = mapped_column(default=None)
    error_rate_5min: Mapped[float | None] = mapped_column(sa.Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProbeClaim(Base):
    """One row per (target, time slot): whoever inserts it runs that probe (once per slot,
    however many workers share the database)."""

    __tablename__ = "probe_claims"

    target: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    slot: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    worker: Mapped[str] = mapped_column(sa.String(100))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class HealthRollup(Base):
    """Hourly aggregate of one target's checks (kept 90 days)."""

    __tablename__ = "health_rollups"

    target: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    service_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None, index=True)
    count: Mapped[int] = mapped_column()
    healthy: Mapped[int] = mapped_column()
    degraded: Mapped[int] = mapped_column()
    unhealthy: Mapped[int] = mapped_column()
    avg_ms: Mapped[float | None] = mapped_column(sa.Float, default=None)
    p95_ms: Mapped[float | None] = mapped_column(sa.Float, default=None)
    max_ms: Mapped[float | None] = mapped_column(sa.Float, default=None)


class HealthState(Base):
    """The published (damped) health of a service or replica, and the current streak."""

    __tablename__ = "health_states"

    target: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    service_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None, index=True)
    status: Mapped[str] = mapped_column(str_enum(*HEALTH, name="health_state_status"))
    streak_status: Mapped[str] = mapped_column(sa.String(20))
    streak: Mapped[int] = mapped_column()
    reasons: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Downtime(UUIDPk, Base):
    """A downtime interval found in the raw checks (seed 003 rules), kept for uptime reports."""

    __tablename__ = "downtime"
    __table_args__ = (sa.Index("ix_downtime_service_start", "service_id", "started_at"),)

    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"))
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime] = mapped_column()
    cause: Mapped[str] = mapped_column(sa.String(200))


class MaintenanceWindow(UUIDPk, Base):
    __tablename__ = "maintenance_windows"
    __table_args__ = (sa.Index("ix_maintenance_service_start", "service_id", "starts_at"),)

    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    created_by: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Incident(UUIDPk, Base):
    """A period during which a service was not healthy; one alert, reminders, one recovery."""

    __tablename__ = "incidents"
    __table_args__ = (
        sa.Index("ix_incidents_service_started", "service_id", "started_at"),
        sa.Index(
            "uq_incidents_one_open",
            "service_id",
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        ),
    )

    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(str_enum(*HEALTH, name="incident_status"))
    cause: Mapped[str] = mapped_column(sa.Text)
    notified_at: Mapped[datetime | None] = mapped_column(default=None)
    reminders: Mapped[int] = mapped_column(default=0)
    recovery_notified_at: Mapped[datetime | None] = mapped_column(default=None)
