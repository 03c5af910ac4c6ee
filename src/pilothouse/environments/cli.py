"""pilothouse env create|list|show|update|delete|grant|revoke."""

from __future__ import annotations

from typing import Annotated

import typer

from pilothouse.cli_support import JsonFlag, api, json_object
from pilothouse.console import out, print_json, print_record, print_table

app = typer.Typer(
    help="Environments: where services run (admin manages them).", no_args_is_help=True
)
COLUMNS = ["name", "type", "driver", "domain", "is_active", "created_at"]


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Environment name (1-100 of A-Z a-z 0-9 - _).")],
    type_: Annotated[
        str, typer.Option("--type", "-t", help="development, staging or production.")
    ] = "development",
    domain: Annotated[str | None, typer.Option(help="Base domain.")] = None,
    driver: Annotated[str, typer.Option(help="process, container or command.")] = "process",
    config: Annotated[str | None, typer.Option(help="Settings as a JSON object.")] = None,
    limits: Annotated[
        str | None, typer.Option(help="Limits as JSON, e.g. '{\"max_deployment_frequency\": 6}'.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an environment (admin)."""
    body: dict[str, object] = {"name": name, "type": type_, "driver": driver, "domain": domain}
    if config is not None:
        body["config"] = json_object(config, "config")
    if limits is not None:
        body["limits"] = json_object(limits, "limits")
    env = api(ctx).request("POST", "/environments", json_body=body)
    if as_json:
        print_json(env)
    else:
        out.print(f"created environment {env['name']} ({env['type']}, id {env['id']})")


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the environments you can see."""
    rows = api(ctx).request("GET", "/environments")
    print_json(rows) if as_json else print_table(rows, COLUMNS, title="environments")


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one environment."""
    env = api(ctx).request("GET", f"/environments/{name}")
    print_json(env) if as_json else print_record(env)


@app.command("update")
def update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name or id.")],
    type_: Annotated[str | None, typer.Option("--type", "-t", help="New type.")] = None,
    domain: Annotated[str | None, typer.Option(help="New domain.")] = None,
    limits: Annotated[str | None, typer.Option(help="New limits (JSON object).")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="Accept work?")] = None,
) -> None:
    """Change an environment (admin)."""
    body: dict[str, object] = {}
    if type_ is not None:
        body["type"] = type_
    if domain is not None:
        body["domain"] = domain
    if limits is not None:
        body["limits"] = json_object(limits, "limits")
    if active is not None:
        body["is_active"] = active
    env = api(ctx).request("PATCH", f"/environments/{name}", json_body=body)
    out.print(f"updated environment {env['name']}")


@app.command("delete")
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Name or id.")]) -> None:
    """Soft-delete an environment (admin); it must have no live services."""
    api(ctx).request("DELETE", f"/environments/{name}")
    out.print(f"deleted environment {name}")


@app.command("grant")
def grant(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Environment name or id.")],
    user: Annotated[str, typer.Argument(help="User name or id.")],
) -> None:
    """Let a user see (and, by role, act on) everything in the environment (admin)."""
    api(ctx).request("POST", f"/environments/{name}/grants", json_body={"user": user})
    out.print(f"granted {user} access to {name}")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Environment name or id.")],
    user: Annotated[str, typer.Argument(help="User name or id.")],
) -> None:
    """Remove a user's grant on the environment (admin)."""
    api(ctx).request("DELETE", f"/environments/{name}/grants/{user}")
    out.print(f"revoked {user}'s access to {name}")
