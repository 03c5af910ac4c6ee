"""A Prometheus server as a metric source (type `prometheus`: a URL, queried with PromQL).

For teams that already run Prometheus: thresholds, alert rules and autoscaling ask it the same
question they ask the embedded store, through the same call: `source.aggregate(name, tags,
window=..., stat=..., group_by=...)` answers `{group value: figure}` ("" when ungrouped) like
`metrics.query.aggregate`. `source_for(db, spec)` gives the embedded store (no spec) or a
Prometheus server. `promql` (pure, table-tested) turns the question into PromQL:

| stat | PromQL over the window `w`, per group `g` (`by (g)`; no `by` when ungrouped) |
|---|---|
| latest | `max by (g) (last_over_time(sel[w]))` (the largest of the series' last values) |
| count / sum | `sum by (g) (count_over_time / sum_over_time(sel[w]))` |
| avg | `sum by (g) (sum_over_time(sel[w])) / sum by (g) (count_over_time(sel[w]))` (pooled) |
| min / max | `min by (g) (min_over_time(sel[w]))` / `max by (g) (max_over_time(sel[w]))` |
| p50 / p95 / p99 | `max by (g) (quantile_over_time(q, sel[w]))` (the largest series' quantile) |
| rate / increase | `sum by (g) (rate / increase(sel[w]))` (extrapolated to the window's edges) |

Names and label names are checked, label values escaped, never spliced. Any PromQL can also
be sent as is (`query`, `query_range`). Answers come from the HTTP API (`/api/v1/query`,
`/api/v1/query_range`) with httpx; Prometheus refusing a query, timing out or being unreachable
is a `SourceError` that says which, with credentials in the URL masked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from pilothouse.core.db import Database
from pilothouse.core.logging import mask_text
from pilothouse.metrics import query

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
#: stat -> (the outer aggregation across series, the function over each series' window)
PROMQL: dict[str, tuple[str, str]] = {
    "latest": ("max", "last_over_time"),
    "count": ("sum", "count_over_time"),
    "sum": ("sum", "sum_over_time"),
    "min": ("min", "min_over_time"),
    "max": ("max", "max_over_time"),
    "rate": ("sum", "rate"),
    "increase": ("sum", "increase"),
}
STATS = (*PROMQL, "avg", *QUANTILES)
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class PrometheusSpec(BaseModel):
    """A metric source of type `prometheus` (validated when it is written)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["prometheus"] = "prometheus"
    url: HttpUrl = Field(description="Base URL of the Prometheus server, e.g. http://prom:9090.")
    timeout: float = Field(default=10.0, gt=0, le=120, description="Seconds per query.")
    bearer_token: str | None = Field(default=None, description="Sent as Authorization: Bearer.")


class SourceError(Exception):
    """Prometheus could not answer (message says why; no credentials in it)."""


@dataclass(frozen=True)
class Question:
    """What thresholds, rules and autoscaling ask of a source (`query.aggregate`'s arguments)."""

    name: str
    stat: str
    window: timedelta
    tags: dict[str, str] = field(default_factory=dict)
    group_by: str | None = None


@dataclass(frozen=True)
class Value:
    """One answer: the series' tags (labels, without `__name__`), a value and its time."""

    tags: dict[str, str]
    value: float
    at: datetime


def duration(window: timedelta) -> str:
    """A PromQL duration: whole seconds (at least 1s)."""
    return f"{max(1, math.ceil(window.total_seconds()))}s"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(name: str, tags: dict[str, str]) -> str:
    """`name{tag="value",...}`; names and tags are checked, values escaped."""
    if not NAME.match(name):
        raise ValueError(f"not a metric name: {name!r}")
    for key in tags:
        if not LABEL.match(key):
            raise ValueError(f"not a label name: {key!r}")
    inner = ",".join(f"{k}={_quote(v)}" for k, v in sorted(tags.items()))
    return f"{name}{{{inner}}}" if inner else name


def promql(q: Question) -> str:
    """The PromQL that answers `q` (see the module docstring's table)."""
    if q.stat not in STATS:
        raise ValueError(f"unknown statistic {q.stat!r}; one of {', '.join(STATS)}")
    if q.group_by is not None and not LABEL.match(q.group_by):
        raise ValueError(f"not a label name: {q.group_by!r}")
    over = f"{selector(q.name, q.tags)}[{duration(q.window)}]"
    by = f" by ({q.group_by})" if q.group_by else ""
    if q.stat == "avg":
        return f"sum{by} (sum_over_time({over})) / sum{by} (count_over_time({over}))"
    if q.stat in QUANTILES:
        return f"max{by} (quantile_over_time({QUANTILES[q.stat]}, {over}))"
    outer, inner = PROMQL[q.stat]
    return f"{outer}{by} ({inner}({over}))"


def _values(data: dict[str, Any]) -> list[Value]:
    """Values of an instant query's `data` (vector or scalar)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return [Value({}, float(result[1]), datetime.fromtimestamp(float(result[0]), UTC))]
    out = []
    for item in result or []:
        at, value = item["value"]
        tags = {k: v for k, v in item.get("metric", {}).items() if k != "__name__"}
        out.append(Value(tags, float(value), datetime.fromtimestamp(float(at), UTC)))
    return out


class PrometheusSource:
    """Queries one Prometheus server over HTTP."""

    kind = "prometheus"

    def __init__(self, spec: PrometheusSpec, *, client: httpx.AsyncClient | None = None) -> None:
        self.spec = spec
        self.base = str(spec.url).rstrip("/")
        self._client = client

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        headers = {}
        if self.spec.bearer_token:
            headers["Authorization"] = f"Bearer {self.spec.bearer_token}"
        client = self._client or httpx.AsyncClient()
        try:
            response = await client.get(
                self.base + path, params=params, headers=headers, timeout=self.spec.timeout
            )
        except httpx.HTTPError as exc:
            raise SourceError(
                mask_text(f"Prometheus at {self.base} unreachable: {exc or type(exc).__name__}")
            ) from None
        finally:
            if self._client is None:
                await client.aclose()
        try:
            body = response.json()
        except ValueError:
            raise SourceError(
                mask_text(f"Prometheus at {self.base} answered HTTP {response.status_code}")
            ) from None
        if body.get("status") != "success":
            raise SourceError(
                f"Prometheus refused the query: {body.get('errorType', 'error')}: "
                f"{str(body.get('error', ''))[:300]}"
            )
        data: dict[str, Any] = body["data"]
        return data

    async def query(self, expr: str, at: datetime | None = None) -> list[Value]:
        """An instant PromQL query (at `at`, default now)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        return _values(await self._get("/api/v1/query", params))

    async def query_range(
        self, expr: str, start: datetime, end: datetime, step: timedelta
    ) -> list[tuple[dict[str, str], list[tuple[datetime, float]]]]:
        """A range PromQL query: each series' tags and its points."""
        data = await self._get(
            "/api/v1/query_range",
            {
                "query": expr,
                "start": f"{start.timestamp():.3f}",
                "end": f"{end.timestamp():.3f}",
                "step": duration(step),
            },
        )
        out = []
        for item in data.get("result") or []:
            tags = {k: v for k, v in item.get("metric", {}).items() if k != "__name__"}
            points = [(datetime.fromtimestamp(float(t), UTC), float(v)) for t, v in item["values"]]
            out.append((tags, points))
        return out

    async def aggregate(
        self,
        name: str,
        tags: Mapping[str, str] | None = None,
        *,
        window: timedelta,
        stat: str = "avg",
        group_by: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, float | None]:
        """`stat` of `name` over `window` per group, as `metrics.query.aggregate` answers it."""
        question = Question(name, stat, window, dict(tags or {}), group_by)
        found = await self.query(promql(question), now)
        return {
            (v.tags.get(group_by, "") if group_by else ""): (
                v.value if math.isfinite(v.value) else None
            )
            for v in found
        }


class MetricSource(Protocol):
    """What thresholds, rules and autoscaling call, whichever store answers."""

    async def aggregate(
        self,
        name: str,
        tags: Mapping[str, str] | None = None,
        *,
        window: timedelta,
        stat: str = "avg",
        group_by: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, float | None]: ...


class EmbeddedSource:
    """The embedded store (metrics/query.py) behind the same call."""

    kind = "embedded"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def aggregate(
        self,
        name: str,
        tags: Mapping[str, str] | None = None,
        *,
        window: timedelta,
        stat: str = "avg",
        group_by: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, float | None]:
        return await query.aggregate(
            self.db, name, tags, window=window, stat=stat, group_by=group_by, now=now
        )


def source_for(db: Database, spec: Mapping[str, Any] | None) -> MetricSource:
    """The source a setting names: none (or `{"type": "embedded"}`) is the embedded store; a
    `{"type": "prometheus", "url": ...}` spec a Prometheus server (validated: pydantic's
    ValidationError names the bad field)."""
    if not spec or spec.get("type", "embedded") == "embedded":
        return EmbeddedSource(db)
    return PrometheusSource(PrometheusSpec.model_validate(spec))
