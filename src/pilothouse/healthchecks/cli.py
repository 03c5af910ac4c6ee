"""pilothouse health, uptime, maintenance, incidents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api
from pilothouse.console import out, print_json, print_table

maintenance_app = typer.Typer(
    help="Maintenance windows: not counted as downtime.", no_args_is_help=True
)


def health(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name or id.")],
    env: EnvOption = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Also replicas that are not live (stopped, failed...) and their checks."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show a service's health: status and reasons, its live replicas, and the latest check of
    each target (10 minutes). --all adds the replicas that are no longer live."""
    view = api(ctx).request(
        "GET",
        f"/services/{service}/health",
        params={"environment": env, "all": all_ or None},
    )
    if as_json:
        print_json(view)
        return
    reasons = f" ({'; '.join(view['reasons'])})" if view["reasons"] else ""
    out.print(f"{service}: {view['status']}{reasons}", markup=False)
    if view["replicas"]:
        rows = [{**r, "id": str(r["id"])[:8]} for r in view["replicas"]]
        print_table(rows, ["id", "status", "health", "port"], title="replicas")
    else:
        out.print("no live replicas" + ("" if all_ else " (--all shows the others)"))
    checks = [{**c, "target": _short_target(c["target"])} for c in view["checks"]]
    print_table(
        checks,
        ["target", "kind", "ok", "response_time_ms", "http_status", "detail", "timestamp"],
        title="checks",
    )


def _short_target(target: str) -> str:
    """`replica:<id>` as `replica:<first 8 of id>`, as the replicas table shows it."""
    kind, _, rest = target.partition(":")
    return f"replica:{rest[:8]}" if kind == "replica" else target


def uptime(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name or id.")],
    month: Annotated[str | None, typer.Option(help="YYYY-MM (default: this month).")] = None,
    env: EnvOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the monthly uptime and SLA report (month to date for the current month).

    A month without any check says "no data" instead of a percentage."""
    report = api(ctx).request(
        "GET", f"/services/{service}/uptime", params={"month": month, "environment": env}
    )
    if as_json:
        print_json(report)
        return
    if not report["checks"] and not report["outages"]:
        out.print(
            f"{report['service']} {report['month']}: no data (no health checks were recorded "
            f"in this period; SLA target {report['sla_target']}%)",
            markup=False,
        )
        for dep in report["deployments"]:
            _print_deploy(dep)
        return
    met = "met" if report["sla_met"] else "MISSED"
    out.print(
        f"{report['service']} {report['month']}: uptime {report['uptime_percent']:.3f}% "
        f"(SLA {report['sla_target']}% {met})"
    )
    out.print(
        f"downtime {report['downtime_minutes']:.1f} of {report['minutes']:.0f} minutes, "
        f"{report['checks']} checks"
    )
    if report.get("stopped_minutes"):
        out.print(f"stopped {report['stopped_minutes']:.1f} minutes (not counted as downtime)")
    p95 = report["p95_ms"]
    avg = report["avg_ms"]
    out.print(
        f"response time: avg {avg:.1f} ms, p95 {p95:.1f} ms" if avg and p95 else "response time: -"
    )
    for start, end in report["outages"]:
        out.print(f"  outage {start[:19]} -> {end[:19]}")
    for dep in report["deployments"]:
        _print_deploy(dep)


def _print_deploy(dep: dict[str, Any]) -> None:
    out.print(
        f"  deploy {dep['created_at'][:19]} {dep['version']} {dep['event_type']} {dep['status']}",
        markup=False,
    )


@maintenance_app.command("add")
def maintenance_add(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name or id.")],
    start: Annotated[datetime, typer.Option(help="Start, e.g. 2026-11-22T22:00:00+00:00.")],
    end: Annotated[datetime, typer.Option(help="End.")],
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    env: EnvOption = None,
) -> None:
    """Declare a maintenance window (operator)."""
    body = {"starts_at": start.isoformat(), "ends_at": end.isoformat(), "reason": reason}
    window = api(ctx).request(
        "POST", f"/services/{service}/maintenance", json_body=body, params={"environment": env}
    )
    out.print(f"maintenance {window['id']} declared for {service}")


@maintenance_app.command("list")
def maintenance_list(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name or id.")],
    env: EnvOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List a service's maintenance windows."""
    rows = api(ctx).request("GET", f"/services/{service}/maintenance", params={"environment": env})
    print_json(rows) if as_json else print_table(
        rows, ["starts_at", "ends_at", "reason", "created_by"], title="windows"
    )


def incidents(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="Only this service.")
    ] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only open incidents.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List incidents newest first: a service not healthy (kind health) and a metric alert rule
    not healthy (kind metric, with the rule's name), with the service and the cause."""
    params = {"service": service, "open": open_only or None}
    client = api(ctx)
    health = client.request("GET", "/incidents", params=params)
    metric = client.request("GET", "/metrics/incidents", params=params)
    health = [{**r, "kind": "health", "rule": ""} for r in health]
    metric = [{**r, "kind": "metric"} for r in metric]
    rows = sorted(health + metric, key=lambda r: str(r["started_at"]), reverse=True)
    print_json(rows) if as_json else print_table(
        rows,
        ["kind", "service", "rule", "started_at", "ended_at", "status", "cause", "reminders"],
        title="incidents",
    )
