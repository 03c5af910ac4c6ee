"""Metric tables: series (name + tags), raw samples, rollups, rollup progress, alert rules and
their incidents.

Samples and rollups are the high-volume tables, so they key on the series' integer id and store
time as integer epoch milliseconds (samples) or epoch seconds (rollup buckets): compact rows, fast
`COPY`/`executemany`, and range scans that compare integers on both stores.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, UUIDPk
from pilothouse.core.types import JSONType, str_enum

SOURCES = ("application", "infrastructure", "external")
STATUSES = ("healthy", "warning", "critical")
#: Rollup resolutions in seconds: 1 minute, 5 minutes, 1 hour.
RESOLUTIONS = (60, 300, 3600)

#: A BIGINT that SQLite treats as its rowid alias (so it autoincrements there too).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class MetricSeries(Base):
    """One series: a metric name and its tags, with unit, source, thresholds and status."""

    __tablename__ = "metric_series"
    __table_args__ = (
        sa.Index("ix_metric_series_name", "name"),
        sa.Index("ix_metric_series_environment_name", "environment_id", "name"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: sha256 of the canonical `name{k="v",...}`: one row per name + tags.
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    tags: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("environments.id"), default=None
    )
    service_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None, index=True)
    unit: Mapped[str] = mapped_column(sa.String(32), default="")
    source: Mapped[str] = mapped_column(
        str_enum(*SOURCES, name="metric_source"), default="application"
    )
    benchmark: Mapped[float | None] = mapped_column(sa.Float, default=None)
    threshold: Mapped[float | None] = mapped_column(sa.Float, default=None)
    threshold_warning: Mapped[float | None] = mapped_column(sa.Float, default=None)
    threshold_critical: Mapped[float | None] = mapped_column(sa.Float, default=None)
    status: Mapped[str] = mapped_column(
        str_enum(*STATUSES, name="metric_status"), default="healthy"
    )
    last_value: Mapped[float | None] = mapped_column(sa.Float, default=None)
    last_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Per-series retention overrides in seconds (None: the settings' defaults).
    retention_raw: Mapped[int | None] = mapped_column(default=None)
    retention_1m: Mapped[int | None] = mapped_column(default=None)
    retention_5m: Mapped[int | None] = mapped_column(default=None)
    retention_1h: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


#: Raw samples: no primary key (a push may repeat a timestamp; COPY must not fail on it).
metric_samples = sa.Table(
    "metric_samples",
    Base.metadata,
    sa.Column("series_id", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),  # epoch milliseconds, UTC
    sa.Column("value", sa.Float, nullable=False),
    sa.Index("ix_metric_samples_series_ts", "series_id", "ts"),
    sa.Index("ix_metric_samples_ts", "ts"),
)


class MetricRollup(Base):
    """Aggregate of one series over one bucket: count, sum, min, max, last value, and a
    serialized DDSketch (mergeable, so quantiles over any window come from rollups)."""

    __tablename__ = "metric_rollups"
    __table_args__ = (sa.Index("ix_metric_rollups_resolution_bucket", "resolution", "bucket"),)

    series_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    resolution: Mapped[int] = mapped_column(primary_key=True)  # seconds: 60, 300, 3600
    bucket: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)  # epoch seconds
    count: Mapped[int] = mapped_column(sa.BigInteger)
    sum: Mapped[float] = mapped_column(sa.Float)
    min: Mapped[float] = mapped_column(sa.Float)
    max: Mapped[float] = mapped_column(sa.Float)
    last: Mapped[float] = mapped_column(sa.Float)
    sketch: Mapped[bytes] = mapped_column(sa.LargeBinary)


class MetricRollupProgress(Base):
    """Up to which epoch second each resolution has been rolled up (buckets before it are done)."""

    __tablename__ = "metric_rollup_progress"

    resolution: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    done_until: Mapped[int] = mapped_column(sa.BigInteger)


class MetricAlertRule(UUIDPk, Base):
    """`expression(metric{tags}) over window` against warning/critical levels, M of N."""

    __tablename__ = "metric_alert_rules"
    __table_args__ = (sa.UniqueConstraint("name", "service_id", name="uq_metric_alert_rules_name"),)

    name: Mapped[str] = mapped_column(sa.String(100))
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("environments.id"), default=None
    )
    service_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("services.id"), default=None, index=True
    )
    metric: Mapped[str] = mapped_column(sa.String(200))
    tags: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    expression: Mapped[str] = mapped_column(sa.String(20))  # avg, p95, rate, ratio, ...
    #: For `ratio`: 100 x increase(metric) / increase(per_metric) over the window (error rate).
    per_metric: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    window_seconds: Mapped[int] = mapped_column()
    comparator: Mapped[str] = mapped_column(sa.String(2))  # ">" or "<"
    warning: Mapped[float | None] = mapped_column(sa.Float, default=None)
    critical: Mapped[float | None] = mapped_column(sa.Float, default=None)
    for_m: Mapped[int] = mapped_column(default=1)
    for_n: Mapped[int] = mapped_column(default=1)
    recover_n: Mapped[int] = mapped_column(default=1)
    is_default: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(
        str_enum(*STATUSES, name="metric_rule_status"), default="healthy"
    )
    #: The last N evaluated levels, newest last ("healthy", "warning", "critical", "nodata").
    history: Mapped[list[str]] = mapped_column(JSONType, default=list)
    last_value: Mapped[float | None] = mapped_column(sa.Float, default=None)
    evaluated_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricIncident(UUIDPk, Base):
    """A period during which an alert rule was not healthy: one alert, reminders, one recovery."""

    __tablename__ = "metric_incidents"
    __table_args__ = (
        sa.Index(
            "uq_metric_incidents_one_open",
            "rule_id",
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        ),
    )

    rule_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("metric_alert_rules.id", ondelete="CASCADE"), index=True
    )
    service_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(str_enum(*STATUSES, name="metric_incident_status"))
    cause: Mapped[str] = mapped_column(sa.Text)
    notified_at: Mapped[datetime | None] = mapped_column(default=None)
    reminders: Mapped[int] = mapped_column(default=0)
    recovery_notified_at: Mapped[datetime | None] = mapped_column(default=None)
