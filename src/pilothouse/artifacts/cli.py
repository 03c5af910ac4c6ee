"""pilothouse artifact register|list."""

from __future__ import annotations

from typing import Annotated

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api
from pilothouse.console import out, print_json, print_table

app = typer.Typer(help="Artifacts: versioned builds of a service.", no_args_is_help=True)
COLUMNS = ["version", "commit_sha", "git_tag", "deployed", "created_at", "pruned_at"]


@app.command("register")
def register(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name or id.")],
    version: Annotated[str, typer.Option("--version", "-v", help="Version label, e.g. v1.2.0.")],
    commit: Annotated[str, typer.Option("--commit", help="Git commit SHA (40 hex).")],
    tag: Annotated[str | None, typer.Option("--tag", help="Git tag vX.Y.Z.")] = None,
    image: Annotated[str | None, typer.Option(help="Image reference.")] = None,
    digest: Annotated[str | None, typer.Option(help="Image digest sha256:<64 hex>.")] = None,
    size_mb: Annotated[int | None, typer.Option(help="Size in MB.")] = None,
    changelog: Annotated[str | None, typer.Option(help="What changed.")] = None,
    env: EnvOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a build of a service (operator or deployer)."""
    body = {
        "service": service,
        "environment": env,
        "version": version,
        "commit_sha": commit,
        "git_tag": tag,
        "image_uri": image,
        "image_digest": digest,
        "size_mb": size_mb,
        "changelog": changelog,
    }
    artifact = api(ctx).request("POST", "/artifacts", json_body=body)
    if as_json:
        print_json(artifact)
    else:
        out.print(f"registered {service} {artifact['version']} (id {artifact['id']})")


@app.command("list")
def list_(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    env: EnvOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List artifacts, newest first."""
    rows = api(ctx).request("GET", "/artifacts", params={"service": service, "environment": env})
    print_json(rows) if as_json else print_table(rows, COLUMNS, title="artifacts")
