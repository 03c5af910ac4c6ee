"""pilothouse history KIND REF."""

from __future__ import annotations

from typing import Annotated

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.console import print_json, print_table

COLUMNS = ["changed_at", "from_status", "to_status", "actor", "reason"]


def history(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="deployment, service, replica or backup.")],
    ref: Annotated[str, typer.Argument(help="Id (or a service name).")],
    as_json: JsonFlag = False,
) -> None:
    """Show every status change of a deployment, service, replica or backup, oldest first."""
    rows = api(ctx).request("GET", f"/history/{kind}/{ref}")
    print_json(rows) if as_json else print_table(rows, COLUMNS, title="status changes")
