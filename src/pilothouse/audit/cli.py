"""pilothouse audit: read the audit trail (admin), newest first, with filters."""

from __future__ import annotations

from typing import Annotated

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.console import print_json, print_table

COLUMNS = ["seq", "at", "actor", "action", "entity_type", "entity_id", "changes"]


def audit(
    ctx: typer.Context,
    entity_type: Annotated[
        str | None,
        typer.Option("--type", "-t", help="Only this kind of record, e.g. service, api_token."),
    ] = None,
    entity_id: Annotated[str | None, typer.Option("--id", help="Only this record's id.")] = None,
    limit: Annotated[int, typer.Option(help="How many entries, 1-1000.")] = 100,
    before: Annotated[
        int | None, typer.Option(help="Entries older than this seq (the next page).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The audit trail (admin): who changed what, newest first; secrets are redacted."""
    params = {"entity_type": entity_type, "entity_id": entity_id, "limit": limit, "before": before}
    rows = api(ctx).request("GET", "/audit", params=params)
    print_json(rows) if as_json else print_table(rows, COLUMNS, title="audit")
