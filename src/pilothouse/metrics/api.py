"""/api/v1/metrics: push ingestion (JSON, Prometheus text), series, queries, alert rules."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import PlainValidator, ValidationError

from pilothouse.core.clock import utcnow
from pilothouse.deps import (
    Caller,
    IngestCaller,
    Session,
    ShapedBodyRoute,
    checked_body,
    get_db,
    shaped_body,
)
from pilothouse.errors import ValidationFailed
from pilothouse.metrics import service
from pilothouse.metrics.ingest import parse_prometheus
from pilothouse.metrics.push import FastBatch, check_fast_json, read_batch
from pilothouse.metrics.query import Stat
from pilothouse.metrics.schemas import (
    IngestBatch,
    IngestResult,
    MetricIncidentRead,
    QueryGroup,
    QueryResult,
    RuleCreate,
    RuleRead,
    RuleUpdate,
    SeriesRead,
    SeriesUpdate,
)

router = APIRouter(prefix="/metrics", tags=["metrics"], route_class=ShapedBodyRoute)


def _as_sent(document: Any) -> Any:
    return document


#: The push body as the route decoded it: the checked batch when `check_fast_json` accepts the
#: text (see deps.ShapedRequest), else the decoded document, checked by `read_batch` (the schema
#: is IngestBatch's).
PushBody = Annotated[Any, PlainValidator(_as_sent, json_schema_input_type=IngestBatch), Body()]


@router.post(
    "/ingest",
    response_model=IngestResult,
    summary="Push a batch of samples (JSON); an ingest token writes into its environment only",
)
@shaped_body(check_fast_json)
async def ingest(
    body: PushBody, request: Request, session: Session, caller: IngestCaller
) -> IngestResult:
    batch: FastBatch | None = checked_body(request)
    try:
        if batch is None:
            batch = read_batch(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    env = await service.ingest_environment(session, caller, batch.get("environment"))
    written = await service.ingest_pushed(
        session, get_db(request).dialect, env, batch["samples"], utcnow()
    )
    return IngestResult(written=written, environment=env.name)


@router.post(
    "/ingest/prometheus",
    response_model=IngestResult,
    summary="Push samples in the Prometheus text exposition format (as to a Pushgateway)",
    openapi_extra={
        "requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}, "required": True}
    },
)
async def ingest_prometheus(
    request: Request,
    session: Session,
    caller: IngestCaller,
    environment: str | None = Query(default=None, description="Environment (name or id)."),
    job: str | None = Query(default=None, max_length=200, description="Added as the job tag."),
    instance: str | None = Query(
        default=None, max_length=200, description="Added as the instance tag."
    ),
) -> IngestResult:
    env = await service.ingest_environment(session, caller, environment)
    raw = await request.body()
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ValidationFailed("body", "must be UTF-8 text") from None
    extra = {k: v for k, v in (("job", job), ("instance", instance)) if v}
    try:
        samples = parse_prometheus(text, utcnow(), extra)
    except ValueError as exc:
        raise ValidationFailed("body", str(exc)) from None
    written = await service.ingest(session, get_db(request).dialect, env, samples)
    return IngestResult(written=written, environment=env.name)


@router.get("/query", response_model=QueryResult, summary="Statistics of a metric over a window")
async def query(
    session: Session,
    caller: Caller,
    name: str = Query(description="Metric name."),
    tag: list[str] = Query(
        default=[], description="Only series with this tag: key=value (repeat)."
    ),
    window: str = Query(default="1h", description="Window ending now: 90s, 5m, 24h, 30d."),
    stat: list[Stat] = Query(
        default=["avg"],
        description="latest, count, sum, avg, min, max, p50, p95, p99, rate, increase (repeat).",
    ),
    group_by: str | None = Query(default=None, description="Group by this tag's value."),
) -> QueryResult:
    groups = await service.query(
        session,
        caller,
        name,
        tags=service.parse_tags(tag),
        window=window,
        stats=list(stat),
        group_by=group_by,
    )
    return QueryResult(
        name=name,
        window=window,
        groups=[QueryGroup.model_validate(g, from_attributes=True) for g in groups],
    )


@router.get("/series", response_model=list[SeriesRead], summary="List metric series")
async def list_series(
    session: Session,
    caller: Caller,
    name: str | None = Query(default=None, description="Only names starting with this."),
    environment: str | None = Query(default=None, description="Only this environment."),
) -> list[SeriesRead]:
    rows = await service.list_series(session, caller, name=name, environment=environment)
    return [SeriesRead.model_validate(r) for r in rows]


#: A series id: a 64-bit integer (a larger one is a 422, never a store error).
SeriesId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Series id.")]


@router.get("/series/{series_id}", response_model=SeriesRead, summary="One metric series")
async def get_series(series_id: SeriesId, session: Session, caller: Caller) -> SeriesRead:
    return SeriesRead.model_validate(await service.get_series(session, caller, series_id))


@router.patch(
    "/series/{series_id}",
    response_model=SeriesRead,
    summary="Set a series' thresholds, baseline, unit or retention overrides",
)
async def update_series(
    series_id: SeriesId, body: SeriesUpdate, session: Session, caller: Caller
) -> SeriesRead:
    row = await service.update_series(session, caller, series_id, body)
    return SeriesRead.model_validate(row)


@router.get("/rules", response_model=list[RuleRead], summary="List metric alert rules")
async def list_rules(session: Session, caller: Caller) -> list[RuleRead]:
    return [RuleRead.model_validate(r) for r in await service.list_rules(session, caller)]


@router.post("/rules", response_model=RuleRead, status_code=201, summary="Create an alert rule")
async def create_rule(body: RuleCreate, session: Session, caller: Caller) -> RuleRead:
    return RuleRead.model_validate(await service.create_rule(session, caller, body))


@router.patch(
    "/rules/{rule_id}",
    response_model=RuleRead,
    summary="Change an alert rule (levels, window, M of N, pause with is_active=false)",
)
async def update_rule(
    rule_id: uuid.UUID, body: RuleUpdate, session: Session, caller: Caller
) -> RuleRead:
    return RuleRead.model_validate(await service.change_rule(session, caller, rule_id, body))


@router.delete(
    "/rules/{rule_id}",
    status_code=204,
    summary="Delete an alert rule and its incidents (default rules: pause them instead)",
)
async def delete_rule(rule_id: uuid.UUID, session: Session, caller: Caller) -> Response:
    await service.delete_rule(session, caller, rule_id)
    return Response(status_code=204)


@router.get(
    "/incidents",
    response_model=list[MetricIncidentRead],
    summary="Incidents opened by metric alert rules, newest first",
)
async def list_incidents(
    session: Session,
    caller: Caller,
    service_ref: str | None = Query(default=None, alias="service", description="Only this one."),
    open_only: bool = Query(default=False, alias="open", description="Only open incidents."),
) -> list[MetricIncidentRead]:
    rows = await service.list_incidents(session, caller, service=service_ref, open_only=open_only)
    return [
        MetricIncidentRead(
            id=row.id,
            rule_id=row.rule_id,
            rule=rule,
            service_id=row.service_id,
            service=name,
            started_at=row.started_at,
            ended_at=row.ended_at,
            status=row.status,
            cause=row.cause,
            reminders=row.reminders,
        )
        for row, rule, name in rows
    ]
