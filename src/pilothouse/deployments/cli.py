"""pilothouse deploy, pilothouse rollback, and pilothouse deployments list|show|logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_record, print_table, printable
from pilothouse.deployments.follow import Collapser, follow_to_outcome, outcome_line
from pilothouse.deployments.transitions import TERMINAL

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

    A run of the same log line prints once, then `... x N`. The outcome and its reason are
    printed when the deployment ends and again as the last line.

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
    archived: Annotated[
        bool,
        typer.Option("--archived", help="List the archived ones (older than 90 days) instead."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List deployments, newest first (archived ones, older than 90 days, with --archived)."""
    params = {
        "archived": "true" if archived else None,
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
    print_table(page["items"], COLUMNS, title="archived deployments" if archived else "deployments")
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
    """Print a deployment's log lines, oldest first (--follow streams until it ends).

    A run of the same line prints once, then `... x N (first to last)`. For a deployment that
    has ended, its outcome and reason are the first and the last line."""
    client = api(ctx)
    if follow_:
        collapser = Collapser()
        for event, data in client.events(f"/deployments/{deployment_id}/events"):
            if event == "log" and (level is None or data["level"] == level):
                if as_json:
                    print_json(data)
                else:
                    _print(collapser.feed(data))
            elif event == "end":
                if not as_json:
                    _print([*collapser.flush(), outcome_line(deployment_id, data)])
                return
        return
    deployment = None if as_json else client.request("GET", f"/deployments/{deployment_id}")
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
    assert deployment is not None
    outcome = (
        [outcome_line(deployment["id"], deployment)] if deployment["status"] in TERMINAL else []
    )
    collapser = Collapser(_dated_line)
    shown = [text for line in lines for text in collapser.feed(line)] + collapser.flush()
    _print(outcome + (shown or ["no log lines"]) + outcome)


def _dated_line(line: dict[str, Any]) -> str:
    stamp = str(line["timestamp"])[:19].replace("T", " ")
    return printable(f"{stamp} {line['level']:<5} [{line['source']}] {line['message']}")


def _print(texts: list[str]) -> None:
    for text in texts:
        out.print(text, markup=False, highlight=False)
