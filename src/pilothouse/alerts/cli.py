"""pilothouse channel add|list|update|test|delete."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pilothouse.cli_support import JsonFlag, api, json_object
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_table

EVENTS_HELP = (
    "Deployment events to receive, comma-separated: started, succeeded, failed, rolled_back "
    "(none unless given; '' clears)."
)
ENVS_HELP = (
    "Environments whose deployment events to receive, comma-separated (empty: all; '' clears)."
)
DeployEvents = Annotated[str | None, typer.Option("--deploy-events", help=EVENTS_HELP)]
DeployEnvs = Annotated[str | None, typer.Option("--deploy-envs", help=ENVS_HELP)]


def _names(value: str | None) -> list[str] | None:
    """A comma-separated list ("" is the empty list, None is "not given")."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


app = typer.Typer(
    help="Notification channels for alerts: webhook, slack, email.", no_args_is_help=True
)


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Channel name.")],
    kind: Annotated[str, typer.Option(help="webhook, slack or email.")],
    url: Annotated[str | None, typer.Option(help="webhook/slack: where to POST.")] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            help="webhook: HMAC-SHA256 key (or PILOTHOUSE_CHANNEL_SECRET).",
            envvar="PILOTHOUSE_CHANNEL_SECRET",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            help='More settings as JSON, e.g. email: \'{"host": "smtp", "to": ["a@b"]}\'.'
        ),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Environment whose granted users may see it."),
    ] = None,
    deploy_events: DeployEvents = None,
    deploy_envs: DeployEnvs = None,
) -> None:
    """Add a channel (admin). Settings are checked now; credentials (URLs, secret, password)
    are sealed and never shown again. Deployment notifications are opt-in: --deploy-events
    (and optionally --deploy-envs) choose which ones it receives."""
    settings: dict[str, object] = dict(json_object(config, "config") or {})
    if url:
        settings["url"] = url
    if secret:
        settings["secret"] = secret
    body: dict[str, object] = {
        "name": name,
        "kind": kind,
        "config": settings,
        "environment": environment,
    }
    if deploy_events is not None:
        body["deploy_events"] = _names(deploy_events)
    if deploy_envs is not None:
        body["deploy_environments"] = _names(deploy_envs)
    channel = api(ctx).request("POST", "/channels", json_body=body)
    out.print(f"added {channel['kind']} channel {channel['name']}", markup=False)


def _opt_ins(row: dict[str, Any]) -> dict[str, Any]:
    """The deployment opt-ins as short text: "failed,rolled_back" and "prod" or "all"."""
    events = row.get("deploy_events") or []
    envs = row.get("deploy_environments") or []
    return {
        **row,
        "deploy_events": ",".join(events) or "-",
        "deploy_environments": (",".join(envs) or "all") if events else "-",
    }


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the channels you may see (credentials masked), with each one's last delivery
    outcome: when it last succeeded, when and why it last failed."""
    rows = api(ctx).request("GET", "/channels")
    print_json(rows) if as_json else print_table(
        [_opt_ins(r) for r in rows],
        [
            "name",
            "kind",
            "config",
            "is_active",
            "deploy_events",
            "deploy_environments",
            "last_success_at",
            "last_failure_at",
            "last_error",
        ],
        title="channels",
    )


@app.command("update")
def update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Channel name.")],
    config: Annotated[
        str | None, typer.Option(help="New settings as JSON (replaces them all).")
    ] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Receive alerts or not.")
    ] = None,
    deploy_events: DeployEvents = None,
    deploy_envs: DeployEnvs = None,
) -> None:
    """Change a channel's settings, its deployment opt-ins, or switch it on or off (admin)."""
    body: dict[str, object] = {}
    if deploy_events is not None:
        body["deploy_events"] = _names(deploy_events)
    if deploy_envs is not None:
        body["deploy_environments"] = _names(deploy_envs)
    if config is not None:
        body["config"] = json_object(config, "config")
    if active is not None:
        body["is_active"] = active
    api(ctx).request("PATCH", f"/channels/{name}", json_body=body)
    out.print(f"updated channel {name}", markup=False)


@app.command("test")
def test(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Channel name.")]) -> None:
    """Send a test message through a channel."""
    result = api(ctx).request("POST", f"/channels/{name}/test")
    if not result["delivered"]:
        raise CliError(f"channel {name}: {result['detail']}")
    out.print(f"channel {name}: test message delivered")


@app.command("delete")
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Channel name.")]) -> None:
    """Remove a channel (admin)."""
    api(ctx).request("DELETE", f"/channels/{name}")
    out.print(f"deleted channel {name}")
