"""Request and response bodies for autoscaling: a policy (seed 000 fields and ranges, plus the
mode, metric, rate limits and scheduled floors) and scaling events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pilothouse.core.inputs import IsoDateTime
from pilothouse.errors import ValidationFailed
from pilothouse.metrics.query import STATS
from pilothouse.metrics.schemas import MetricName, Tags

Mode = Literal["step", "target"]
ActionName = Literal["scale_up", "scale_down", "manual_scale"]
Trigger = Literal["autoscaler", "manual", "deployment"]

#: What a new policy starts from (the seed's production sample, one replica floor).
DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "min_instances": 1,
    "max_instances": 10,
    "target_cpu_percent": 70.0,
    "target_memory_percent": 75.0,
    "scale_up_threshold": 0.80,
    "scale_down_threshold": 0.40,
    "scale_up_cooldown_seconds": 300,
    "scale_down_cooldown_seconds": 600,
    "evaluation_period_seconds": 300,
    "datapoints_to_trigger": 2,
    "mode": "step",
    "metric": "cpu_memory",
    "metric_stat": "avg",
    "metric_tags": {},
    "metric_target": None,
    "metric_per_replica": False,
    "stabilization_seconds": 300,
    "max_step_up": 4,
    "max_step_down": 1,
    "schedules": [],
}

SCALE_TO_ZERO = (
    "must be at least 1: a service runs 1-100 replicas (seed 004), and scaling to zero needs a "
    "router that holds a request until a replica is ready, which no driver here has"
)


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = Field(
        max_length=100,
        description="When the floor starts (five-field cron, UTC), e.g. 0 9 * * 1-5.",
    )
    minutes: int = Field(ge=1, le=10080, description="How long the floor holds after each start.")
    min_instances: int = Field(ge=1, le=100, description="The floor while it holds.")


class PolicySet(BaseModel):
    """The fields to set; omitted ones keep their value (a new policy: the defaults)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(default=None, description="Whether the policy is evaluated.")
    min_instances: int | None = Field(
        default=None, ge=0, le=100, description="Never fewer replicas (1-100; 0 is refused)."
    )
    max_instances: int | None = Field(
        default=None, ge=1, le=100, description="Never more replicas (1-100, >= min_instances)."
    )
    target_cpu_percent: float | None = Field(
        default=None, gt=0, le=100, description="Target CPU utilization, percent (target mode)."
    )
    target_memory_percent: float | None = Field(
        default=None, gt=0, le=100, description="Target memory utilization, percent."
    )
    scale_up_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Utilization above which to add (0.80 = 80%)."
    )
    scale_down_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Utilization below which to remove (< up)."
    )
    scale_up_cooldown_seconds: int | None = Field(
        default=None, ge=0, le=86400, description="Seconds between scale-ups."
    )
    scale_down_cooldown_seconds: int | None = Field(
        default=None, ge=0, le=86400, description="Seconds between scale-downs."
    )
    evaluation_period_seconds: int | None = Field(
        default=None, ge=1, le=86400, description="One datapoint's period (default 300)."
    )
    datapoints_to_trigger: int | None = Field(
        default=None, ge=1, le=100, description="Consecutive periods needed to act."
    )
    mode: Mode | None = Field(default=None, description="step (seed rule) or target (HPA rule).")
    metric: MetricName | None = Field(
        default=None,
        description="cpu_memory (default), cpu, memory, or a metric name of the metrics "
        "capability (then metric_target is required).",
    )
    metric_stat: str | None = Field(
        default=None, description=f"Statistic of the metric per period: {', '.join(STATS)}."
    )
    metric_tags: Tags | None = Field(
        default=None, description="Only series with these tags (default: service and env)."
    )
    metric_target: float | None = Field(
        default=None,
        gt=0,
        description="Target value of the metric (per replica when asked); null clears it.",
    )
    metric_per_replica: bool | None = Field(
        default=None, description="Divide the metric by the current replicas (requests/s)."
    )
    stabilization_seconds: int | None = Field(
        default=None, ge=0, le=86400, description="Target mode: scale-down stabilization window."
    )
    max_step_up: int | None = Field(
        default=None, ge=1, le=100, description="Target mode: replicas added per period at most."
    )
    max_step_down: int | None = Field(
        default=None, ge=1, le=100, description="Target mode: replicas removed per period at most."
    )
    schedules: list[ScheduleSpec] | None = Field(
        default=None, max_length=20, description="Scheduled floors (min_instances by cron)."
    )


def check_policy(values: dict[str, Any]) -> None:
    """The rules across fields of a complete policy; ValidationFailed naming field and rule."""
    if values["min_instances"] < 1:
        raise ValidationFailed("min_instances", SCALE_TO_ZERO)
    if values["min_instances"] > values["max_instances"]:
        raise ValidationFailed(
            "min_instances", f"must be <= max_instances ({values['max_instances']})"
        )
    if values["scale_up_threshold"] <= values["scale_down_threshold"]:
        raise ValidationFailed(
            "scale_up_threshold",
            f"must be greater than scale_down_threshold ({values['scale_down_threshold']})",
        )
    if values["metric_stat"] not in STATS:
        raise ValidationFailed("metric_stat", f"must be one of {', '.join(STATS)}")
    custom = values["metric"] not in ("cpu_memory", "cpu", "memory")
    if custom and not values["metric_target"]:
        raise ValidationFailed("metric_target", f"is required for the metric {values['metric']}")
    for index, schedule in enumerate(values["schedules"]):
        if not croniter.is_valid(schedule["cron"]):
            raise ValidationFailed(f"schedules.{index}.cron", "must be a five-field cron")
        if schedule["min_instances"] > values["max_instances"]:
            raise ValidationFailed(
                f"schedules.{index}.min_instances",
                f"must be <= max_instances ({values['max_instances']})",
            )


#: Fields an explicit null clears (for the others null means "keep").
CLEARABLE = ("metric_target",)


def merged(current: dict[str, Any], change: PolicySet) -> dict[str, Any]:
    """The complete policy after applying `change`, checked. A field given as null keeps its
    value, except `metric_target`, which null clears."""
    cleared = {
        name: None
        for name in CLEARABLE
        if name in change.model_fields_set and getattr(change, name) is None
    }
    values = {**current, **change.model_dump(exclude_none=True), **cleared}
    try:
        PolicySet.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValidationFailed(".".join(str(p) for p in first["loc"]), first["msg"]) from None
    check_policy(values)
    return values


class PolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Policy id.")
    service_id: uuid.UUID = Field(description="The service it scales.")
    service: str = Field(description="Service name.")
    environment: str = Field(description="Environment name.")
    enabled: bool = Field(description="Whether the policy is evaluated.")
    min_instances: int = Field(description="Never fewer replicas.")
    max_instances: int = Field(description="Never more replicas.")
    target_cpu_percent: float = Field(description="Target CPU utilization, percent.")
    target_memory_percent: float = Field(description="Target memory utilization, percent.")
    scale_up_threshold: float = Field(description="Utilization above which to add.")
    scale_down_threshold: float = Field(description="Utilization below which to remove.")
    scale_up_cooldown_seconds: int = Field(description="Seconds between scale-ups.")
    scale_down_cooldown_seconds: int = Field(description="Seconds between scale-downs.")
    evaluation_period_seconds: int = Field(description="One datapoint's period.")
    datapoints_to_trigger: int = Field(description="Consecutive periods needed to act.")
    mode: Mode = Field(description="step or target.")
    metric: str = Field(description="cpu_memory, cpu, memory or a metric name.")
    metric_stat: str = Field(description="Statistic of the metric per period.")
    metric_tags: dict[str, str] = Field(description="Series filter (default service and env).")
    metric_target: float | None = Field(description="Target value of a custom metric.")
    metric_per_replica: bool = Field(description="Metric divided by the current replicas.")
    stabilization_seconds: int = Field(description="Scale-down stabilization window.")
    max_step_up: int = Field(description="Replicas added per period at most (target mode).")
    max_step_down: int = Field(description="Replicas removed per period at most (target mode).")
    schedules: list[ScheduleSpec] = Field(description="Scheduled floors.")
    current_replicas: int = Field(description="The service's target replicas now.")
    evaluated_at: datetime | None = Field(
        description="Last evaluation (the time of the round that last evaluated it)."
    )
    last_decision: str | None = Field(description="What the last evaluation decided, and why.")
    created_at: datetime = Field(description="Created.")
    updated_at: datetime = Field(description="Last changed.")


class EventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Event id.")
    service_id: uuid.UUID = Field(description="The service scaled.")
    environment_id: uuid.UUID = Field(description="Its environment.")
    timestamp: datetime = Field(description="When (UTC).")
    action: ActionName = Field(description="scale_up, scale_down or manual_scale.")
    instances_before: int = Field(description="Replicas before.")
    instances_after: int = Field(description="Replicas after.")
    trigger_reason: str = Field(description="Why, as a sentence.")
    cpu_percent_avg: float | None = Field(description="CPU average over the evaluation.")
    memory_percent_avg: float | None = Field(description="Memory average over the evaluation.")
    triggered_by: Trigger = Field(
        description="autoscaler or manual (deployment: accepted from the seed, never written: "
        "no deployment changes a replica count)."
    )
    triggered_by_user: str | None = Field(description="Who, when manual.")
    success: bool = Field(description="Whether the scaling went through.")
    error_message: str | None = Field(description="Why not, when it failed.")
    deployment_id: uuid.UUID | None = Field(description="The scale deployment it recorded.")
    created_at: datetime = Field(description="Recorded.")


class TracePoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timestamp: IsoDateTime = Field(description="The end of the period (ISO 8601 with offset).")
    cpu: float | None = Field(default=None, ge=0, le=10000, description="CPU percent.")
    memory: float | None = Field(default=None, ge=0, le=10000, description="Memory percent.")
    value: float | None = Field(default=None, description="The policy's own metric.")


class SimulateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: IsoDateTime = Field(description="Replay from (ISO 8601 with offset).")
    end: IsoDateTime = Field(description="Replay to; at most 31 days after start.")
    policy: PolicySet | None = Field(
        default=None,
        description="Fields overriding the saved policy (or the defaults without one): a "
        "policy not yet saved.",
    )
    trace: list[TracePoint] | None = Field(
        default=None,
        max_length=100_000,
        description="Datapoints to replay instead of the stored metrics.",
    )
    initial_replicas: int | None = Field(
        default=None, ge=1, le=100, description="Replicas at the start (default: now's)."
    )


class SimulatedStep(BaseModel):
    at: datetime = Field(description="When the decision would have been taken.")
    action: ActionName = Field(description="scale_up or scale_down.")
    before: int = Field(description="Replicas before.")
    after: int = Field(description="Replicas after.")
    reason: str = Field(description="Why, as the event would say it.")


class SimulateResult(BaseModel):
    service: str = Field(description="Service name.")
    start: datetime = Field(description="Replayed from.")
    end: datetime = Field(description="Replayed to.")
    source: Literal["stored", "trace"] = Field(description="Stored metrics or the given trace.")
    evaluations: int = Field(description="Evaluations replayed.")
    datapoints: int = Field(description="Datapoints with any value.")
    initial: int = Field(description="Replicas at the start.")
    final: int = Field(description="Replicas at the end.")
    peak: int = Field(description="Most replicas at once.")
    replica_hours: float = Field(description="Replica-hours the policy would have cost.")
    baseline_replica_hours: float = Field(description="Replica-hours at the initial count.")
    steps: list[SimulatedStep] = Field(description="The decisions that changed the count.")
