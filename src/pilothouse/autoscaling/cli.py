"""pilothouse scaling set|show|disable|events|simulate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_table
from pilothouse.errors import ValidationFailed

scaling_app = typer.Typer(
    help="Autoscaling: a service's scaling policy, its scaling events, what-if replays.",
    no_args_is_help=True,
)

ServiceArg = Annotated[str, typer.Argument(help="Service name or id.")]


def _schedule(text: str) -> dict[str, Any]:
    """`CRON@MINUTES=MIN`, e.g. `0 9 * * 1-5@540=4`."""
    try:
        cron, rest = text.rsplit("@", 1)
        minutes, floor = rest.split("=", 1)
        return {"cron": cron.strip(), "minutes": int(minutes), "min_instances": int(floor)}
    except ValueError:
        raise CliError(
            f"--schedule {text!r}: expected CRON@MINUTES=MIN_INSTANCES, e.g. '0 9 * * 1-5@540=4'"
        ) from None


def _ref(ctx: typer.Context, service: str, env: str | None) -> str:
    found = api(ctx).request("GET", f"/services/{service}", params={"environment": env})
    return str(found["id"])


def show_policy(policy: dict[str, Any]) -> None:
    floor = f"{policy['min_instances']}-{policy['max_instances']}"
    state = "enabled" if policy["enabled"] else "disabled"
    out.print(
        f"{policy['service']} ({policy['environment']}): {state}, {policy['mode']} mode on "
        f"{policy['metric']}, {floor} replicas, now {policy['current_replicas']}",
        markup=False,
    )
    if policy["mode"] == "step":
        out.print(
            f"  up above {policy['scale_up_threshold']:.0%}, down below "
            f"{policy['scale_down_threshold']:.0%}, for {policy['datapoints_to_trigger']} x "
            f"{policy['evaluation_period_seconds']}s",
            markup=False,
        )
    else:
        target = (
            f"CPU {policy['target_cpu_percent']}%, memory {policy['target_memory_percent']}%"
            if policy["metric"] in ("cpu_memory", "cpu", "memory")
            else f"{policy['metric']} {policy['metric_target']}"
        )
        out.print(
            f"  target {target}, over {policy['datapoints_to_trigger']} x "
            f"{policy['evaluation_period_seconds']}s, stabilization "
            f"{policy['stabilization_seconds']}s, +{policy['max_step_up']}/"
            f"-{policy['max_step_down']} per period",
            markup=False,
        )
    out.print(
        f"  cooldowns: up {policy['scale_up_cooldown_seconds']}s, down "
        f"{policy['scale_down_cooldown_seconds']}s",
        markup=False,
    )
    for s in policy["schedules"]:
        out.print(
            f"  floor {s['min_instances']} from '{s['cron']}' for {s['minutes']} min", markup=False
        )
    if policy.get("last_decision"):
        out.print(f"  last decision: {policy['last_decision']}", markup=False)


@scaling_app.command("set")
def set_policy(
    ctx: typer.Context,
    service: ServiceArg,
    env: EnvOption = None,
    min_instances: Annotated[int | None, typer.Option("--min", help="Min replicas.")] = None,
    max_instances: Annotated[int | None, typer.Option("--max", help="Max replicas.")] = None,
    mode: Annotated[str | None, typer.Option(help="step (seed rule) or target (HPA).")] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="cpu_memory (default), cpu, memory, or a metric name."),
    ] = None,
    metric_stat: Annotated[str | None, typer.Option(help="avg, p95, rate, ...")] = None,
    metric_target: Annotated[
        float | None, typer.Option(help="Target value of a custom metric.")
    ] = None,
    per_replica: Annotated[
        bool | None, typer.Option("--per-replica/--total", help="Divide the metric by replicas.")
    ] = None,
    target_cpu: Annotated[float | None, typer.Option(help="Target CPU percent.")] = None,
    target_memory: Annotated[float | None, typer.Option(help="Target memory percent.")] = None,
    up: Annotated[float | None, typer.Option(help="scale_up_threshold, 0-1.")] = None,
    down: Annotated[float | None, typer.Option(help="scale_down_threshold, 0-1.")] = None,
    up_cooldown: Annotated[int | None, typer.Option(help="Seconds between scale-ups.")] = None,
    down_cooldown: Annotated[int | None, typer.Option(help="Seconds between scale-downs.")] = None,
    period: Annotated[int | None, typer.Option(help="evaluation_period_seconds.")] = None,
    datapoints: Annotated[int | None, typer.Option(help="datapoints_to_trigger.")] = None,
    stabilization: Annotated[
        int | None, typer.Option(help="Scale-down stabilization seconds (target).")
    ] = None,
    max_step_up: Annotated[int | None, typer.Option(help="Replicas added per period.")] = None,
    max_step_down: Annotated[int | None, typer.Option(help="Replicas removed per period.")] = None,
    schedule: Annotated[
        list[str] | None,
        typer.Option(help="Scheduled floor CRON@MINUTES=MIN (repeat; replaces the list)."),
    ] = None,
    no_schedules: Annotated[bool, typer.Option(help="Remove every scheduled floor.")] = False,
    enable: Annotated[bool, typer.Option("--enable", help="Enable the policy.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create or change a service's scaling policy (operator); only the options given change."""
    body: dict[str, Any] = {
        "min_instances": min_instances,
        "max_instances": max_instances,
        "mode": mode,
        "metric": metric,
        "metric_stat": metric_stat,
        "metric_target": metric_target,
        "metric_per_replica": per_replica,
        "target_cpu_percent": target_cpu,
        "target_memory_percent": target_memory,
        "scale_up_threshold": up,
        "scale_down_threshold": down,
        "scale_up_cooldown_seconds": up_cooldown,
        "scale_down_cooldown_seconds": down_cooldown,
        "evaluation_period_seconds": period,
        "datapoints_to_trigger": datapoints,
        "stabilization_seconds": stabilization,
        "max_step_up": max_step_up,
        "max_step_down": max_step_down,
    }
    body = {k: v for k, v in body.items() if v is not None}
    if schedule:
        body["schedules"] = [_schedule(s) for s in schedule]
    elif no_schedules:
        body["schedules"] = []
    if enable:
        body["enabled"] = True
    client = api(ctx)
    ref = _ref(ctx, service, env)
    policy = client.request("PUT", f"/services/{ref}/scaling", json_body=body)
    if as_json:
        print_json(policy)
        return
    show_policy(policy)


@scaling_app.command("show")
def show(
    ctx: typer.Context, service: ServiceArg, env: EnvOption = None, as_json: JsonFlag = False
) -> None:
    """A service's scaling policy and its last decision."""
    ref = _ref(ctx, service, env)
    policy = api(ctx).request("GET", f"/services/{ref}/scaling")
    if as_json:
        print_json(policy)
        return
    show_policy(policy)


@scaling_app.command("disable")
def disable(
    ctx: typer.Context,
    service: ServiceArg,
    env: EnvOption = None,
    remove: Annotated[bool, typer.Option(help="Remove the policy (events are kept).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Stop autoscaling a service (operator); the replicas stay as they are."""
    client = api(ctx)
    ref = _ref(ctx, service, env)
    if remove:
        client.request("DELETE", f"/services/{ref}/scaling")
        if as_json:
            print_json({"removed": True})
        else:
            out.print(f"removed the scaling policy of {service}", markup=False)
        return
    policy = client.request("PUT", f"/services/{ref}/scaling", json_body={"enabled": False})
    if as_json:
        print_json(policy)
    else:
        out.print(f"autoscaling of {policy['service']} disabled", markup=False)


@scaling_app.command("events")
def events(
    ctx: typer.Context,
    service: ServiceArg,
    env: EnvOption = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """A service's scaling events, newest first: when, what, from and to, why, by whom."""
    ref = _ref(ctx, service, env)
    rows = api(ctx).request("GET", f"/services/{ref}/scaling/events", params={"limit": limit})
    if as_json:
        print_json(rows)
        return
    shown = [
        {
            "timestamp": r["timestamp"][:19].replace("T", " "),
            "action": r["action"],
            "replicas": f"{r['instances_before']} -> {r['instances_after']}",
            "by": r["triggered_by_user"] or r["triggered_by"],
            "ok": "yes" if r["success"] else f"no: {r['error_message']}",
            "reason": r["trigger_reason"],
        }
        for r in rows
    ]
    if not shown:
        out.print(f"no scaling events for {service}", markup=False)
        return
    print_table(shown, ["timestamp", "action", "replicas", "by", "ok", "reason"], title="scaling")


def _since(text: str) -> str:
    """A date (2026-11-01, midnight UTC) or an ISO 8601 time with offset, as ISO 8601."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"{text!r}: expected a date (2026-11-01) or ISO 8601 time") from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


@scaling_app.command("simulate")
def simulate(
    ctx: typer.Context,
    service: ServiceArg,
    start: Annotated[str, typer.Option("--from", help="Start: 2026-11-01 or ISO 8601 (UTC).")],
    end: Annotated[str, typer.Option("--to", help="End: 2026-11-08 or ISO 8601 (UTC).")],
    env: EnvOption = None,
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", help="JSON file of policy fields overriding the saved ones."),
    ] = None,
    trace: Annotated[
        Path | None,
        typer.Option(help="CSV trace (timestamp,cpu,memory,value) instead of stored metrics."),
    ] = None,
    replicas: Annotated[
        int | None, typer.Option(help="Replicas at the start (default: now's).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """What-if: the decisions a policy would have taken over stored metrics (or a trace), and
    the replica-hours they would have cost. Records nothing."""
    body: dict[str, Any] = {"start": _since(start), "end": _since(end)}
    if policy_file is not None:
        try:
            body["policy"] = json.loads(policy_file.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"--policy {policy_file}: {exc}") from None
    if trace is not None:
        try:
            text = trace.read_text()
        except OSError as exc:
            raise CliError(f"--trace {trace}: {exc.strerror or exc}") from None
        try:
            from pilothouse.autoscaling.simulate import trace_points  # loads the store layer

            points = trace_points(text)
        except ValidationFailed as exc:
            raise CliError(f"--trace {trace}: {exc.message}") from None
        body["trace"] = [
            {"timestamp": p.end.isoformat(), "cpu": p.cpu, "memory": p.memory, "value": p.value}
            for p in points
        ]
    if replicas is not None:
        body["initial_replicas"] = replicas
    client = api(ctx)
    ref = _ref(ctx, service, env)
    result = client.request("POST", f"/services/{ref}/scaling/simulate", json_body=body)
    if as_json:
        print_json(result)
        return
    for step in result["steps"]:
        out.print(
            f"{step['at'][:19].replace('T', ' ')}  {step['action']:<10} "
            f"{step['before']} -> {step['after']}  {step['reason']}",
            markup=False,
        )
    if not result["steps"]:
        out.print("no scaling decisions", markup=False)
    saved = result["baseline_replica_hours"] - result["replica_hours"]
    out.print(
        f"{result['service']}: {result['evaluations']} evaluations over "
        f"{result['datapoints']} datapoints ({result['source']}); replicas "
        f"{result['initial']} -> {result['final']} (peak {result['peak']}); "
        f"{result['replica_hours']:.2f} replica-hours vs {result['baseline_replica_hours']:.2f} "
        f"at a fixed {result['initial']} ({saved:+.2f} saved)",
        markup=False,
    )
