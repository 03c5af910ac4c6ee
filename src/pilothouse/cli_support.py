"""Helpers shared by the feature CLIs: the API client from the root options, and --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pilothouse.client import ApiClient, CliError

if TYPE_CHECKING:
    from pilothouse.config import Settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
EnvOption = Annotated[
    str | None, typer.Option("--env", "-e", help="Environment name, when a name is ambiguous.")
]


def api(ctx: typer.Context) -> ApiClient:
    """The client for the server named by --url / PILOTHOUSE_URL / the saved config."""
    root = ctx.find_root()
    url = root.params.get("url") if root.params else None
    return ApiClient.from_env(url)


def json_object(value: str | None, option: str) -> dict[str, Any] | None:
    """Parse a --OPTION given as a JSON object; a clear one-line error otherwise."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        raise CliError(f"--{option} must be a JSON object, e.g. '{{\"key\": 1}}'") from None
    if not isinstance(parsed, dict):
        raise CliError(f"--{option} must be a JSON object")
    return parsed


# -- commands that run on the pilothouse host (init, serve, db, keys, backup run...) ------------

DataDir = Annotated[
    Path | None,
    typer.Option(help="Data directory (default PILOTHOUSE_DATA_DIR or ~/.local/share/pilothouse)."),
]
DbUrl = Annotated[
    str | None,
    typer.Option(
        help="Database URL (default PILOTHOUSE_DATABASE_URL or SQLite in the data directory)."
    ),
]


def local_settings(data_dir: Path | None, database_url: str | None) -> Settings:
    """The server's settings (PILOTHOUSE_*), with --data-dir / --database-url applied."""
    from pilothouse.config import Settings

    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    return Settings(**overrides)
