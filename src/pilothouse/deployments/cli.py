"""pilothouse deploy, and pilothouse deployments list|show|logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api
from pilothouse.console import out, print_json, print_record, print_table

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
    as_json: JsonFlag = False,
) -> None:
    """Record a deployment of VERSION to SERVICE (operator); it starts as pending."""
    body = {
        "service": service,
        "environment": env,
        "version": version,
        "commit_message": message,
        "triggered_by": trigger,
        "ci_run_id": ci_run_id,
    }
    deployment = api(ctx).request("POST", "/deployments", json_body=body)
    if as_json:
        print_json(deployment)
    else:
        out.print(
            f"deployment {deployment['id']} of {service} {deployment['version']} "
            f"recorded: {deployment['status']}"
        )


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
    as_json: JsonFlag = False,
) -> None:
    """Print a deployment's log lines, oldest first."""
    client = api(ctx)
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
        out.print(f"{stamp} {line['level']:<5} [{line['source']}] {line['message']}", markup=False)
