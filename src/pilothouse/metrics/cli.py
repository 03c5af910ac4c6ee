"""pilothouse metrics query|list|show."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.client import CliError
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


rules_app = typer.Typer(
    help="Metric alert rules: list, add, update (tune or pause) and remove.", no_args_is_help=True
)
metrics_app.add_typer(rules_app, name="rules")

RuleRef = Annotated[str, typer.Argument(help="Rule id, or its name (with --service if shared).")]
ServiceOption = Annotated[
    str | None, typer.Option("--service", "-s", help="Service (name or id) the rule watches.")
]


def _rule_id(ctx: typer.Context, ref: str, service: str | None) -> str:
    """The id of the rule named `ref` (or `ref` itself when it is an id)."""
    rules = api(ctx).request("GET", "/metrics/rules")
    if any(r["id"] == ref for r in rules):
        return ref
    found = [r for r in rules if r["name"] == ref]
    if service:
        svc = api(ctx).request("GET", f"/services/{service}")
        found = [r for r in found if r["service_id"] == svc["id"]]
    if not found:
        raise CliError(f"alert rule {ref!r} not found")
    if len(found) > 1:
        raise CliError(f"several alert rules are named {ref!r}: give --service")
    return str(found[0]["id"])


def _levels(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


@rules_app.command("list")
def rules_list(
    ctx: typer.Context, service: ServiceOption = None, as_json: JsonFlag = False
) -> None:
    """Alert rules with their expression, levels, M of N and current status."""
    rows = api(ctx).request("GET", "/metrics/rules")
    if service:
        svc = api(ctx).request("GET", f"/services/{service}")
        rows = [r for r in rows if r["service_id"] == svc["id"]]
    if as_json:
        print_json(rows)
        return
    shown = [
        {
            **r,
            "rule": f"{r['expression']}({r['metric']}) over {r['window_seconds']}s "
            f"{r['comparator']} {_number(r['warning'])}/{_number(r['critical'])}",
            "tags": ",".join(f"{k}={v}" for k, v in sorted(r["tags"].items())),
            "for": f"{r['for_m']} of {r['for_n']}",
            "active": "yes" if r["is_active"] else "paused",
            "value": _number(r["last_value"]),
        }
        for r in rows
    ]
    print_table(
        shown,
        ["id", "name", "tags", "rule", "for", "status", "value", "active"],
        title="alert rules",
    )


@rules_app.command("add")
def rules_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Rule name (shown in alerts and incidents).")],
    metric: Annotated[str, typer.Option(help="Metric name.")],
    expression: Annotated[
        str, typer.Option(help="latest, avg, min, max, p50, p95, p99, rate, increase, ratio...")
    ],
    service: ServiceOption = None,
    env: Annotated[str | None, typer.Option("--env", help="Environment.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="key=value (repeat).")] = None,
    per_metric: Annotated[str | None, typer.Option(help="Denominator of a ratio.")] = None,
    window: Annotated[str, typer.Option(help="Window: 5m, 1h.")] = "5m",
    below: Annotated[bool, typer.Option("--below", help="Breach when below the levels.")] = False,
    warning: Annotated[float | None, typer.Option(help="Warning level.")] = None,
    critical: Annotated[float | None, typer.Option(help="Critical level.")] = None,
    for_m: Annotated[int, typer.Option(help="Fire when M of the last N breach.")] = 1,
    for_n: Annotated[int, typer.Option(help="N evaluations considered.")] = 1,
    recover_n: Annotated[int, typer.Option(help="Clear evaluations to recover.")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Add an alert rule: `expression(metric{tags}) over window` against warning/critical."""
    tags: dict[str, str] = {}
    for pair in tag or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--tag {pair!r} is not key=value")
        tags[key] = value
    body = _levels(
        {
            "name": name,
            "service": service,
            "environment": env,
            "metric": metric,
            "tags": tags,
            "expression": expression,
            "per_metric": per_metric,
            "window": window,
            "comparator": "<" if below else ">",
            "warning": warning,
            "critical": critical,
            "for_m": for_m,
            "for_n": for_n,
            "recover_n": recover_n,
        }
    )
    rule = api(ctx).request("POST", "/metrics/rules", json_body=body)
    print_json(rule) if as_json else out.print(f"alert rule {rule['name']} added ({rule['id']})")


@rules_app.command("update")
def rules_update(
    ctx: typer.Context,
    rule: RuleRef,
    service: ServiceOption = None,
    window: Annotated[str | None, typer.Option(help="Window: 5m, 1h.")] = None,
    warning: Annotated[float | None, typer.Option(help="Warning level.")] = None,
    critical: Annotated[float | None, typer.Option(help="Critical level.")] = None,
    for_m: Annotated[int | None, typer.Option(help="M of the last N.")] = None,
    for_n: Annotated[int | None, typer.Option(help="N evaluations.")] = None,
    recover_n: Annotated[int | None, typer.Option(help="Clear evaluations to recover.")] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--paused", help="Evaluate it, or pause it.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Tune a rule's levels, window or M of N, or pause it (default rules too)."""
    body = _levels(
        {
            "window": window,
            "warning": warning,
            "critical": critical,
            "for_m": for_m,
            "for_n": for_n,
            "recover_n": recover_n,
            "is_active": active,
        }
    )
    rule_id = _rule_id(ctx, rule, service)
    updated = api(ctx).request("PATCH", f"/metrics/rules/{rule_id}", json_body=body)
    print_json(updated) if as_json else out.print(f"alert rule {updated['name']} updated")


@rules_app.command("rm")
def rules_rm(ctx: typer.Context, rule: RuleRef, service: ServiceOption = None) -> None:
    """Remove a rule and its incidents (default rules come back: pause them instead)."""
    rule_id = _rule_id(ctx, rule, service)
    api(ctx).request("DELETE", f"/metrics/rules/{rule_id}")
    out.print(f"alert rule {rule} removed")
