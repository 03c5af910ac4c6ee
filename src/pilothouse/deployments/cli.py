"""pilothouse deploy, rollback, diff, and pilothouse deployments list|show|logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_record, print_table, printable
from pilothouse.deployments.follow import Collapser, follow_to_outcome, outcome_line
from pilothouse.deployments.restore_prompt import confirm_data_restore, data_restore_hint
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
    """Deploy VERSION to SERVICE (operator or deployer) and follow it: a bar per replica, live logs.

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
    with_data: Annotated[
        bool,
        typer.Option(
            "--with-data",
            help="Also restore the pre-deployment backup the release being left took before its "
            "migration (asks first).",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Restore without asking.")] = False,
) -> None:
    """Roll SERVICE back by hand (operator or deployer) to the release live before the current one.

    The target is the last release that went live before the current one, not rolled back since.

    A release that never went live (a failed deployment, even rolled back) is never a target.

    Rolling back again goes further back. --to VERSION must have gone live once; else deploy it.

    --with-data restores the data as it was before the release being left migrated it (its
    pre-deployment backup), before the rollout; without it, the output says when one is available.

    Exits 0 when the rollback succeeds or the version is already live."""
    client = api(ctx)
    if with_data:
        confirm_data_restore(client, service, to, env, yes=yes)
    try:
        deployment = client.request(
            "POST",
            f"/services/{service}/rollback",
            json_body={"to": to, "with_data": with_data},
            params={"environment": env},
        )
    except CliError as exc:
        if exc.code == "already_live":
            out.print(f"nothing to do: {exc.message}")
            return
        raise
    out.print(f"rollback {deployment['id']} of {service} to {deployment['version']} recorded")
    data_restore_hint(service, deployment)
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
    """Show one deployment and its config version: the variables it delivered, by name and
    version (never values), and the driver settings it ran with."""
    client = api(ctx)
    deployment = client.request("GET", f"/deployments/{deployment_id}")
    config = client.request("GET", f"/deployments/{deployment['id']}/config")
    if as_json:
        print_json({**deployment, "config": config})
        return
    print_record(deployment)
    out.print("")
    if not config["pinned"]:
        out.print("config: not pinned (recorded before pinning, or not started yet)")
        return
    origin = f", copied from release {config['copied_from']}" if config["copied_from"] else ""
    out.print(
        f"config: {len(config['variables'])} variable(s) pinned at "
        f"{str(config['pinned_at'])[:19].replace('T', ' ')}{origin}",
        markup=False,
    )
    print_table(config["variables"], ["key", "source", "version", "secret"], title="variables")
    settings = config["driver_settings"] or {}
    shown = {
        "driver": settings.get("driver"),
        "target_replicas": settings.get("target_replicas"),
        **{f"driver_config.{k}": v for k, v in (settings.get("config") or {}).items()},
    }
    if settings.get("env"):
        shown["driver_config.env"] = ", ".join(settings["env"])
    print_record(shown)


def diff(
    ctx: typer.Context,
    release_a: Annotated[str, typer.Argument(help="Deployment id or unique id prefix (from).")],
    release_b: Annotated[str, typer.Argument(help="Deployment id or unique id prefix (to).")],
    as_json: JsonFlag = False,
) -> None:
    """Show what changed between two releases (deployments): artifact, variables by name and
    version (never values), driver settings.

    Exits 0 whether or not they differ; 1 when a release cannot be found."""
    result = api(ctx).request("GET", f"/deployments/{release_a}/diff/{release_b}")
    if as_json:
        print_json(result)
        return
    a, b = result["from_release"], result["to_release"]
    lines = [f"from {a['deployment_id']} ({a['event_type']}, {a['status']})"]
    lines.append(f"to   {b['deployment_id']} ({b['event_type']}, {b['status']})")
    if result["artifact_changed"]:
        lines.append(
            f"artifact: {a['version']} -> {b['version']} "
            f"(commit {(a['commit_sha'] or '-')[:12]} -> {(b['commit_sha'] or '-')[:12]})"
        )
    else:
        lines.append(f"artifact: {a['version']} (unchanged)")
    marks = {"added": "+", "removed": "-", "changed": "~"}
    changes = result["variables"]
    lines.append(f"variables: {len(changes)} changed" if changes else "variables: unchanged")
    for c in changes:
        before = f"{c['version_from']} ({c['source_from']})" if c["version_from"] else ""
        after = f"{c['version_to']} ({c['source_to']})" if c["version_to"] else ""
        arrow = f"{before} -> {after}" if before and after else before or after
        secret = "  secret" if c["secret"] else ""
        lines.append(f"  {marks[c['change']]} {c['key']}  {arrow}{secret}")
    settings = result["driver_settings"]
    lines.append(
        f"driver settings: {len(settings)} changed" if settings else "driver settings: unchanged"
    )
    for c in settings:
        before, after = c["before"] or "", c["after"] or ""
        lines.append(f"  {marks[c['change']]} {c['key']}  {before} -> {after}")
    lines += [f"note: {note}" for note in result["notes"]]
    for line in lines:
        out.print(printable(line), markup=False, highlight=False)


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
