"""pilothouse deploy, and pilothouse deployments list|show|logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_record, print_table, printable
from pilothouse.deployments.follow import _log_line, follow_to_outcome

app = typer.Typer(help="Deployments: history, details and logs.", no_args_is_help=True)
COLUMNS = ["id", "version", "status", "event_type", "operator", "created_at", "duration_seconds"]


def deploy(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name or id.")],
    version: Annotated[
        str, typer.Option("--version", "-v", help="Version of a registered artifact.")
    ],
    env: EnvOption = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    trigger: Annotated[
        str, typer.Option(help="manual, ci, automated or github_action.")
    ] = "manual",
    ci_run_id: Annotated[str | None, typer.Option(help="CI run id.")] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the rollout until its outcome.")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Deploy VERSION to SERVICE (operator) and follow it: a bar per replica, live logs.

    Exits 0 when the deployment succeeds (or the version is already live), 1 otherwise."""
    body = {
        "service": service,
        "environment": env,
        "version": version,
        "commit_message": message,
        "triggered_by": trigger,
        "ci_run_id": ci_run_id,
    }
    client = api(ctx)
    try:
        deployment = client.request("POST", "/deployments", json_body=body)
    except CliError as exc:
        if exc.code == "already_live":
            out.print(f"nothing to do: {exc.message}")
            return
        raise
    if as_json:
        print_json(deployment)
    else:
        out.print(
            f"deployment {deployment['id']} of {service} {deployment['version']} "
            f"recorded: {deployment['status']}"
        )
    if wait:
        follow_to_outcome(client, deployment["id"], quiet=as_json)


def rollback(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name or id.")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Version to roll back to; it must have gone live once (default: the release "
            "live before the current one).",
        ),
    ] = None,
    env: EnvOption = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow it to its outcome.")
    ] = True,
) -> None:
    """Roll SERVICE back by hand (operator) to the release live before the current one.

    The target is the last release that went live before the current one, not rolled back since.

    A release that never went live (a failed deployment, even rolled back) is never a target.

    Rolling back again goes further back. --to VERSION must have gone live once; else deploy it.

    Exits 0 when the rollback succeeds or the version is already live."""
    client = api(ctx)
    try:
        deployment = client.request(
            "POST",
            f"/services/{service}/rollback",
            json_body={"to": to},
            params={"environment": env},
        )
    except CliError as exc:
        if exc.code == "already_live":
            out.print(f"nothing to do: {exc.message}")
            return
        raise
    out.print(f"rollback {deployment['id']} of {service} to {deployment['version']} recorded")
    if wait:
        follow_to_outcome(client, deployment["id"])


def replicas(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name or id.")],
    env: EnvOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List a service's replicas: status, pid, port, restarts, CPU, memory."""
    rows = api(ctx).request("GET", f"/services/{service}/replicas", params={"environment": env})
    if as_json:
        print_json(rows)
        return
    live = [r for r in rows if r["status"] not in ("stopped",)] or rows
    table = [
        {
            "id": r["id"][:8],
            "version": r.get("version"),
            "status": r["status"],
            "health": r["health"],
            "pid": r["pid"],
            "port": (r.get("ports") or {}).get("http"),
            "restarts": r["restart_count"],
            "cpu %": None if r["cpu_percent"] is None else f"{r['cpu_percent']:.1f}",
            "memory MB": None if r["memory_mb"] is None else f"{r['memory_mb']:.1f}",
        }
        for r in live
    ]
    cols = ["id", "version", "status", "health", "pid", "port", "restarts", "cpu %", "memory MB"]
    print_table(table, cols, title="replicas")


@app.command("list")
def list_(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="Only this service.")
    ] = None,
    env: EnvOption = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only these statuses (repeatable).")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="Created at or after.")] = None,
    until: Annotated[datetime | None, typer.Option(help="Created before.")] = None,
    limit: Annotated[int, typer.Option(help="How many (1-500).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor from a previous page.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List deployments, newest first."""
    params = {
        "service": service,
        "environment": env,
        "status": status or [],
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "limit": limit,
        "cursor": cursor,
    }
    page = api(ctx).request("GET", "/deployments", params=params)
    if as_json:
        print_json(page)
        return
    print_table(page["items"], COLUMNS, title="deployments")
    if page["next_cursor"]:
        out.print(f"more: --cursor {page['next_cursor']}")


@app.command("show")
def show(
    ctx: typer.Context,
    deployment_id: Annotated[str, typer.Argument(help="Deployment id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one deployment."""
    deployment = api(ctx).request("GET", f"/deployments/{deployment_id}")
    print_json(deployment) if as_json else print_record(deployment)


@app.command("logs")
def logs(
    ctx: typer.Context,
    deployment_id: Annotated[str, typer.Argument(help="Deployment id.")],
    level: Annotated[str | None, typer.Option(help="Only debug, info, warn or error.")] = None,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until the deployment ends.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Print a deployment's log lines, oldest first (--follow streams until it ends)."""
    client = api(ctx)
    if follow_:
        for event, data in client.events(f"/deployments/{deployment_id}/events"):
            if event == "log" and (level is None or data["level"] == level):
                if as_json:
                    print_json(data)
                else:
                    out.print(_log_line(data), markup=False)
            elif event == "end":
                out.print(f"deployment {data['status']}")
                return
        return
    after, lines = 0, []
    while True:
        page = client.request(
            "GET",
            f"/deployments/{deployment_id}/logs",
            params={"after": after, "limit": 5000, "level": level},
        )
        lines.extend(page["items"])
        if not page["items"] or len(page["items"]) < 5000:
            break
        after = page["last_seq"]
    if as_json:
        print_json(lines)
        return
    if not lines:
        out.print("no log lines")
    for line in lines:
        stamp = line["timestamp"][:19].replace("T", " ")
        text = f"{stamp} {line['level']:<5} [{line['source']}] {line['message']}"
        out.print(printable(text), markup=False)
