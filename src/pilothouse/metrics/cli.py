"""pilothouse metrics query|list|show."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.console import out, print_json, print_table
from pilothouse.metrics.sparkline import sparkline

metrics_app = typer.Typer(
    help="Metrics: query statistics over a window, list and show series.", no_args_is_help=True
)


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@metrics_app.command("query")
def query(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Metric name, e.g. http_request_duration_ms.")],
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only series with key=value (repeat).")
    ] = None,
    window: Annotated[str, typer.Option(help="Window ending now: 90s, 5m, 24h, 30d.")] = "1h",
    stat: Annotated[
        list[str] | None,
        typer.Option(
            "--stat",
            help="latest, count, sum, avg, min, max, p50, p95, p99, rate, increase (repeat); "
            "default: avg, p95 and rate.",
        ),
    ] = None,
    group_by: Annotated[str | None, typer.Option(help="Group by this tag.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Statistics of a metric over a window, per group, with a sparkline of its averages."""
    stats = stat or ["avg", "p95", "rate"]
    result = api(ctx).request(
        "GET",
        "/metrics/query",
        params={
            "name": name,
            "tag": tag or [],
            "window": window,
            "stat": stats,
            "group_by": group_by,
        },
    )
    if as_json:
        print_json(result)
        return
    if not result["groups"] or all(g["series"] == 0 for g in result["groups"]):
        out.print(f"no series named {name} match", markup=False)
        return
    for group in result["groups"]:
        label = f"{group_by}={group['group']}  " if group_by else ""
        figures = "  ".join(f"{k}={_number(v)}" for k, v in group["figures"].items())
        out.print(f"{label}{figures}  ({group['series']} series, {window})", markup=False)
        line = sparkline([point[1] for point in group["points"]])
        if line:
            out.print(f"  {line}", markup=False)


@metrics_app.command("list")
def list_series(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Only names starting with this.")] = None,
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List metric series (name, tags, unit, source, status)."""
    rows = api(ctx).request("GET", "/metrics/series", params={"name": name, "environment": env})
    if as_json:
        print_json(rows)
        return
    shown = [
        {**r, "tags": ",".join(f"{k}={v}" for k, v in sorted(r["tags"].items()))} for r in rows
    ]
    print_table(shown, ["id", "name", "tags", "unit", "source", "status"], title="metric series")


@metrics_app.command("show")
def show(
    ctx: typer.Context,
    series_id: Annotated[int, typer.Argument(help="Series id (from `metrics list`).")],
    window: Annotated[str, typer.Option(help="Window of the figures and sparkline.")] = "1h",
    as_json: JsonFlag = False,
) -> None:
    """One series: its settings, thresholds and status, and its figures over a window."""
    client = api(ctx)
    series = client.request("GET", f"/metrics/series/{series_id}")
    tags = [f"{k}={v}" for k, v in sorted(series["tags"].items())]
    result = client.request(
        "GET",
        "/metrics/query",
        params={
            "name": series["name"],
            "tag": tags,
            "window": window,
            "stat": ["latest", "avg", "min", "max", "p95"],
        },
    )
    if as_json:
        print_json({"series": series, "query": result})
        return
    out.print(f"{series['name']}{{{','.join(tags)}}}  [{series['source']}]", markup=False)
    for key in (
        "unit",
        "status",
        "benchmark",
        "threshold",
        "threshold_warning",
        "threshold_critical",
        "retention_raw",
    ):
        if series.get(key) not in (None, ""):
            out.print(f"  {key}: {series[key]}", markup=False)
    for group in result["groups"]:
        figures = "  ".join(f"{k}={_number(v)}" for k, v in group["figures"].items())
        out.print(f"  {window}: {figures}", markup=False)
        line = sparkline([point[1] for point in group["points"]])
        if line:
            out.print(f"  {line}", markup=False)
