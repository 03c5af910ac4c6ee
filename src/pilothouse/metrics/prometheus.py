"""A Prometheus server as a metric source (type `prometheus`: a URL, queried with PromQL).

For teams that already run Prometheus: thresholds, alert rules and autoscaling ask the same
questions of it as of the embedded store. A question is a `Question` (series name, tag
equalities, an aggregate over a window, optional grouping tags); `promql` turns it into the PromQL
Prometheus answers the same way (pure, table-tested):

| aggregate | PromQL over the window `w` |
|---|---|
| latest | `last_over_time(sel[w])` |
| avg / min / max | `avg_over_time` / `min_over_time` / `max_over_time(sel[w])` |
| p50 / p95 / p99 | `quantile_over_time(0.5 / 0.95 / 0.99, sel[w])` |
| rate | `rate(sel[w])` (per second) |
| rolling5m | `avg_over_time(sel[5m])` |

grouped by tags `g`: `avg by (g) (...)` (`sum` for rate: a per-group total). Anything PromQL can
say is also accepted as is (`PrometheusSource.query(promql)`).

Answers come from the HTTP API (`/api/v1/query`, `/api/v1/query_range`) with httpx; an error
of Prometheus (bad PromQL, timeout, unreachable) is a `SourceError` whose message says which,
with the URL's credentials masked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from pilothouse.core.logging import mask_text

Aggregate = Literal["latest", "avg", "min", "max", "p50", "p95", "p99", "rate", "rolling5m"]
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
OVER_TIME = {"latest": "last_over_time", "avg": "avg_over_time", "min": "min_over_time",
             "max": "max_over_time"}  # fmt: skip
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
    """What thresholds, rules and autoscaling ask of a source."""

    name: str
    aggregate: Aggregate
    window: timedelta
    tags: dict[str, str] = field(default_factory=dict)
    by: tuple[str, ...] = ()


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
    sel = selector(q.name, q.tags)
    w = duration(q.window)
    if q.aggregate == "rolling5m":
        expr = f"avg_over_time({sel}[5m])"
    elif q.aggregate == "rate":
        expr = f"rate({sel}[{w}])"
    elif q.aggregate in QUANTILES:
        expr = f"quantile_over_time({QUANTILES[q.aggregate]}, {sel}[{w}])"
    else:
        expr = f"{OVER_TIME[q.aggregate]}({sel}[{w}])"
    if q.by:
        for key in q.by:
            if not LABEL.match(key):
                raise ValueError(f"not a label name: {key!r}")
        outer = "sum" if q.aggregate == "rate" else "avg"
        expr = f"{outer} by ({', '.join(q.by)}) ({expr})"
    return expr


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

    async def ask(self, q: Question, at: datetime | None = None) -> list[Value]:
        """The answer to a question, as the embedded store gives it."""
        return await self.query(promql(q), at)
