"""Helpers shared by the feature CLIs: the API client from the root options, and --json."""

from __future__ import annotations

from typing import Annotated

import typer

from pilothouse.client import ApiClient

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
EnvOption = Annotated[
    str | None, typer.Option("--env", "-e", help="Environment name, when a name is ambiguous.")
]


def api(ctx: typer.Context) -> ApiClient:
    """The client for the server named by --url / PILOTHOUSE_URL / the saved config."""
    root = ctx.find_root()
    url = root.params.get("url") if root.params else None
    return ApiClient.from_env(url)
