"""Request and response bodies for metrics: samples, series, queries, alert rules."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

from pilothouse.metrics.ingest import MAX_TAG_LENGTH, MAX_TAGS, check_tags

Source = Literal["application", "infrastructure", "external"]
Status = Literal["healthy", "warning", "critical"]
MetricName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_:][A-Za-z0-9_:.\-]*$")
]
DURATION_RE = re.compile(r"^(\d+)(s|m|h|d)$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`90s`, `5m`, `24h`, `30d` as a timedelta; ValueError otherwise."""
    found = DURATION_RE.match(text.strip())
    if not found or int(found.group(1)) == 0:
        raise ValueError("a duration like 90s, 5m, 24h or 30d")
    return timedelta(seconds=int(found.group(1)) * UNIT_SECONDS[found.group(2)])


def _tags(value: dict[str, str]) -> dict[str, str]:
    check_tags(value)
    return value


#: Tags as the schema states them (check_tags enforces the same on every path).
Tags = Annotated[
    dict[str, Annotated[str, Field(max_length=MAX_TAG_LENGTH)]],
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_TAGS,
            "propertyNames": {"minLength": 1, "maxLength": MAX_TAG_LENGTH},
            "additionalProperties": {"type": "string", "maxLength": MAX_TAG_LENGTH},
        }
    ),
    AfterValidator(_tags),
]


class SampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: MetricName = Field(description="Metric name, e.g. http_request_duration_ms.")
    tags: Tags = Field(default_factory=dict, description="Tags: service, replica, endpoint, ...")
    value: float = Field(description="The measured value.")
    timestamp: AwareDatetime | None = Field(
        default=None,
        description="When it was measured: ISO 8601 with a time zone, or Unix seconds or "
        "milliseconds; default: now.",
    )
    unit: str = Field(default="", max_length=32, description="Unit: ms, percent, bytes, count...")
    source: Source = Field(default="application", description="Where the metric comes from.")


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str | None = Field(
        default=None,
        description="Environment (name or id) the samples belong to; an ingest token's own "
        "environment when omitted (and only that one is accepted from it).",
    )
    samples: list[SampleIn] = Field(max_length=10_000, description="Up to 10,000 samples.")


class IngestResult(BaseModel):
    written: int = Field(description="Samples stored.")
    environment: str = Field(description="The environment they were stored in.")


class SeriesRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Series id.")
    name: str = Field(description="Metric name.")
    tags: dict[str, str] = Field(description="Tags identifying the series.")
    environment_id: uuid.UUID | None = Field(description="Environment, when known.")
    service_id: uuid.UUID | None = Field(description="Service, when the tags name a known one.")
    unit: str = Field(description="Unit.")
    source: Source = Field(description="application, infrastructure or external.")
    benchmark: float | None = Field(description="Expected baseline value.")
    threshold: float | None = Field(description="Alert threshold (seed 002).")
    threshold_warning: float | None = Field(description="Warning level.")
    threshold_critical: float | None = Field(description="Critical level.")
    status: Status = Field(description="From the latest value against the thresholds.")
    last_value: float | None = Field(description="Latest value seen by the evaluator.")
    last_at: datetime | None = Field(description="When the latest value was measured.")
    retention_raw: int | None = Field(description="Own raw retention, seconds (None: default).")
    retention_1m: int | None = Field(description="Own 1-minute rollup retention, seconds.")
    retention_5m: int | None = Field(description="Own 5-minute rollup retention, seconds.")
    retention_1h: int | None = Field(description="Own hourly rollup retention, seconds.")


Seconds = Annotated[int, Field(ge=60, le=10 * 366 * 86400)]


class SeriesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: str | None = Field(default=None, max_length=32, description="Unit.")
    benchmark: float | None = Field(default=None, description="Expected baseline value.")
    threshold: float | None = Field(default=None, description="Alert threshold.")
    threshold_warning: float | None = Field(default=None, description="Warning level.")
    threshold_critical: float | None = Field(default=None, description="Critical level.")
    retention_raw: Seconds | None = Field(default=None, description="Raw retention, seconds.")
    retention_1m: Seconds | None = Field(default=None, description="1-minute rollups, seconds.")
    retention_5m: Seconds | None = Field(default=None, description="5-minute rollups, seconds.")
    retention_1h: Seconds | None = Field(default=None, description="Hourly rollups, seconds.")


class QueryGroup(BaseModel):
    group: str = Field(description="The group_by tag's value ('' when not grouped).")
    series: int = Field(description="How many series the group holds.")
    value: float | None = Field(description="The first statistic asked for.")
    figures: dict[str, float | None] = Field(description="Every statistic asked for.")
    points: list[tuple[int, float]] = Field(description="(epoch second, average) per step.")
    rolling: list[tuple[int, float]] = Field(description="(epoch second, 5-minute average).")


class QueryResult(BaseModel):
    name: str = Field(description="Metric name.")
    window: str = Field(description="The window read.")
    groups: list[QueryGroup] = Field(description="One entry per group.")


#: A rule's window: a positive count of seconds, minutes, hours or days (under 3.2 years).
RuleWindow = Annotated[
    str, Field(pattern=r"^([1-9][0-9]{0,7}s|[1-9][0-9]{0,5}m|[1-9][0-9]{0,4}h|[1-9][0-9]{0,2}d)$")
]

Expression = Literal[
    "latest", "avg", "min", "max", "p50", "p95", "p99", "rate", "increase", "count", "ratio"
]


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="Rule name (shown in alerts).")
    service: str | None = Field(
        default=None, description="Service (name or id) it watches; this or `environment`."
    )
    environment: str | None = Field(
        default=None,
        description="Environment (name or id): the rule's own without a service, else where "
        "to find the service when its name is ambiguous.",
    )
    metric: MetricName = Field(description="Metric name.")
    tags: Tags = Field(default_factory=dict, description="Only series with these tags.")
    expression: Expression = Field(description="Statistic over the window.")
    per_metric: MetricName | None = Field(
        default=None, description="For ratio: 100 x increase(metric) / increase(per_metric)."
    )
    window: RuleWindow = Field(default="5m", description="Window, e.g. 5m, 1h.")
    comparator: Literal[">", "<"] = Field(default=">", description="Breach when value > or <.")
    warning: float | None = Field(default=None, description="Warning level.")
    critical: float | None = Field(default=None, description="Critical level.")
    for_m: int = Field(default=1, ge=1, le=100, description="Fire when M of the last N breach.")
    for_n: int = Field(default=1, ge=1, le=100, description="N evaluations considered.")
    recover_n: int = Field(default=1, ge=1, le=100, description="Clear evaluations to recover.")


class RuleUpdate(BaseModel):
    """Only the fields given change; `null` clears a level (one level must remain)."""

    model_config = ConfigDict(extra="forbid")

    metric: MetricName | None = Field(default=None, description="Metric name.")
    tags: Tags | None = Field(default=None, description="Only series with these tags.")
    expression: Expression | None = Field(default=None, description="Statistic over the window.")
    per_metric: MetricName | None = Field(default=None, description="Denominator of a ratio.")
    window: RuleWindow | None = Field(default=None, description="Window, e.g. 5m, 1h.")
    comparator: Literal[">", "<"] | None = Field(default=None, description="> or <.")
    warning: float | None = Field(default=None, description="Warning level (null: none).")
    critical: float | None = Field(default=None, description="Critical level (null: none).")
    for_m: int | None = Field(default=None, ge=1, le=100, description="M of the last N.")
    for_n: int | None = Field(default=None, ge=1, le=100, description="N evaluations.")
    recover_n: int | None = Field(default=None, ge=1, le=100, description="Clear to recover.")
    is_active: bool | None = Field(default=None, description="false: the rule is not evaluated.")


class MetricIncidentRead(BaseModel):
    id: uuid.UUID = Field(description="Incident id.")
    rule_id: uuid.UUID = Field(description="The alert rule that opened it.")
    rule: str = Field(description="The alert rule's name.")
    service_id: uuid.UUID | None = Field(description="Service, when the rule watches one.")
    service: str = Field(description="Service name ('' for a rule on no service).")
    started_at: datetime = Field(description="When the rule left healthy.")
    ended_at: datetime | None = Field(description="When it recovered (null while open).")
    status: Status = Field(description="warning or critical (the latest).")
    cause: str = Field(description="Rule, expression, window and value.")
    reminders: int = Field(description="Reminders sent.")


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Rule id.")
    name: str = Field(description="Rule name.")
    service_id: uuid.UUID | None = Field(description="Service watched.")
    environment_id: uuid.UUID | None = Field(description="Environment.")
    metric: str = Field(description="Metric name.")
    tags: dict[str, str] = Field(description="Tag filter.")
    expression: str = Field(description="Statistic.")
    per_metric: str | None = Field(description="Denominator metric of a ratio.")
    window_seconds: int = Field(description="Window, seconds.")
    comparator: str = Field(description="> or <.")
    warning: float | None = Field(description="Warning level.")
    critical: float | None = Field(description="Critical level.")
    for_m: int = Field(description="M of N.")
    for_n: int = Field(description="N.")
    recover_n: int = Field(description="Clear evaluations to recover.")
    is_default: bool = Field(description="Shipped default (seed 003 targets).")
    is_active: bool = Field(description="Evaluated (false: paused).")
    status: Status = Field(description="Current status.")
    last_value: float | None = Field(description="Value at the last evaluation.")
    evaluated_at: datetime | None = Field(description="Last evaluation.")
