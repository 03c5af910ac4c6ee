"""Scaling policies (seed 000 ScalingPolicy, one per service) and scaling events (seed 000
ScalingEvent, kept 90 days).

The seed's fields keep their names and ranges; beyond the seed a policy has a `mode` (step or
target), the `metric` it follows (CPU and memory by default, or any metric of the metrics
capability), the target mode's stabilization window and rate limits, and scheduled floors.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, Timestamps, UUIDPk
from pilothouse.core.types import JSONType, str_enum

MODES = ("step", "target")
ACTIONS = ("scale_up", "scale_down", "manual_scale")
TRIGGERS = ("autoscaler", "manual", "deployment")


class ScalingCohort(UUIDPk, Base):
    """Policies last evaluated together, and when: a round records its evaluation in one row
    per cohort instead of one per policy (evaluate.py says how cohorts form and split)."""

    __tablename__ = "scaling_cohorts"

    evaluated_at: Mapped[datetime] = mapped_column()


class ScalingPolicy(UUIDPk, Timestamps, Base):
    """When to add or remove a service's replicas."""

    __tablename__ = "scaling_policies"
    __table_args__ = (
        sa.CheckConstraint(
            "min_instances >= 1 AND min_instances <= max_instances AND max_instances <= 100",
            name="instances_range",
        ),
        sa.CheckConstraint(
            "scale_down_threshold >= 0 AND scale_up_threshold <= 1 "
            "AND scale_down_threshold < scale_up_threshold",
            name="thresholds_range",
        ),
        sa.Index("ix_scaling_policies_environment_id", "environment_id"),
    )

    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"), unique=True)
    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    enabled: Mapped[bool] = mapped_column(default=True)
    min_instances: Mapped[int] = mapped_column()
    max_instances: Mapped[int] = mapped_column()
    target_cpu_percent: Mapped[float] = mapped_column(sa.Float)
    target_memory_percent: Mapped[float] = mapped_column(sa.Float)
    scale_up_threshold: Mapped[float] = mapped_column(sa.Float)
    scale_down_threshold: Mapped[float] = mapped_column(sa.Float)
    scale_up_cooldown_seconds: Mapped[int] = mapped_column()
    scale_down_cooldown_seconds: Mapped[int] = mapped_column()
    evaluation_period_seconds: Mapped[int] = mapped_column(default=300)
    datapoints_to_trigger: Mapped[int] = mapped_column()
    # -- beyond the seed
    mode: Mapped[str] = mapped_column(str_enum(*MODES, name="scaling_mode"), default="step")
    #: "cpu_memory" (the seed: CPU and memory), "cpu", "memory", or a metric name.
    metric: Mapped[str] = mapped_column(sa.String(200), default="cpu_memory")
    metric_stat: Mapped[str] = mapped_column(sa.String(20), default="avg")
    metric_tags: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metric_target: Mapped[float | None] = mapped_column(sa.Float, default=None)
    metric_per_replica: Mapped[bool] = mapped_column(default=False)
    stabilization_seconds: Mapped[int] = mapped_column(default=300)
    max_step_up: Mapped[int] = mapped_column(default=4)
    max_step_down: Mapped[int] = mapped_column(default=1)
    #: [{"cron": "0 9 * * 1-5", "minutes": 540, "min_instances": 4}, ...]
    schedules: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    #: The cohort it was last evaluated with (its `evaluated_at`); none before its first round.
    #: Not indexed: the round moving 10,000 policies at once stays HOT-updatable, and the
    #: queries on it (members per cohort, empty cohorts) read every policy anyway.
    cohort_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("scaling_cohorts.id", ondelete="SET NULL"), default=None
    )
    #: The last decision's sentence (also when nothing changed), for `scaling show`.
    last_decision: Mapped[str | None] = mapped_column(sa.Text, default=None)


class ScalingEvent(UUIDPk, Base):
    """One scaling action: who, why (a sentence), from how many to how many, and whether it
    went through."""

    __tablename__ = "scaling_events"
    __table_args__ = (
        sa.Index("ix_scaling_events_environment_timestamp", "environment_id", "timestamp"),
        sa.Index("ix_scaling_events_service_timestamp", "service_id", "timestamp"),
        sa.Index("ix_scaling_events_action", "action"),
        sa.Index("ix_scaling_events_timestamp", "timestamp"),
    )

    service_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("services.id"))
    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(str_enum(*ACTIONS, name="scaling_action"))
    instances_before: Mapped[int] = mapped_column()
    instances_after: Mapped[int] = mapped_column()
    trigger_reason: Mapped[str] = mapped_column(sa.Text)
    cpu_percent_avg: Mapped[float | None] = mapped_column(sa.Float, default=None)
    memory_percent_avg: Mapped[float | None] = mapped_column(sa.Float, default=None)
    triggered_by: Mapped[str] = mapped_column(str_enum(*TRIGGERS, name="scaling_trigger"))
    triggered_by_user: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    success: Mapped[bool] = mapped_column()
    error_message: Mapped[str | None] = mapped_column(sa.Text, default=None)
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
