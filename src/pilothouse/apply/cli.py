"""pilothouse apply / export / schema: configuration as code over HTTP (schema is local).

Exit codes of `apply`: 0 applied (or nothing to do), 1 an error (the file's problems are listed
one per line, `FILE:LINE:COLUMN: path: rule`), 2 with `--check` when the live state drifted from
the file (the drift is printed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pilothouse.cli_support import api
from pilothouse.client import ApiClient, CliError
from pilothouse.console import err, out, print_json

DRIFT_EXIT = 2

FileOpt = Annotated[
    Path, typer.Option("--file", "-f", help="The pilothouse.yaml to apply ('-' reads stdin).")
]


def _read(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"cannot read {path}: not UTF-8 text") from None


def _problems(exc: CliError, filename: str) -> CliError:
    """A 422 on the file: one line per problem, with the real file name."""
    if exc.code != "validation_failed" or not isinstance(exc.detail, list):
        return exc
    for item in exc.detail:
        if isinstance(item, dict) and "line" in item:
            where = f" {item['field']}:" if item.get("field") != "document" else ""
            err.print(
                f"{filename}:{item['line']}:{item['column']}:{where} {item['rule']}", markup=False
            )
    count = len(exc.detail)
    return CliError(f"{filename}: {count} problem(s); nothing applied")


def _post(client: ApiClient, path: str, body: dict[str, Any], filename: str) -> Any:
    try:
        return client.request("POST", path, json_body=body)
    except CliError as exc:
        raise _problems(exc, filename) from None


def _value(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value, ensure_ascii=False)


def print_plan(plan: dict[str, Any]) -> None:
    """`+ kind key` with its fields, `~ kind key` with `field: before -> after`, `- kind key`."""
    signs = {"create": "+", "update": "~", "delete": "-"}
    for change in plan["changes"]:
        out.print(f"{signs[change['action']]} {change['kind']} {change['key']}", markup=False)
        for field in change["fields"]:
            if change["action"] == "create":
                line = f"{field['field']}: {_value(field['after'])}"
            else:
                line = f"{field['field']}: {_value(field['before'])} -> {_value(field['after'])}"
            out.print(f"    {line}", markup=False)
    counts = plan["counts"]
    out.print(
        f"plan: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete",
        markup=False,
    )
    if plan["unmanaged"]:
        out.print(
            f"{len(plan['unmanaged'])} live object(s) not in the file (kept; --prune deletes them)",
            markup=False,
        )


def apply(
    ctx: typer.Context,
    file: FileOpt,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete live objects the file does not mention.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Only compare: exit 2 and print the drift when live state differs."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Apply a pilothouse.yaml: print the plan, confirm, apply it in one transaction.

    Problems in the file are listed as FILE:LINE:COLUMN: path: rule, all at once.

    Exits 0 when applied or nothing changed, 1 on an error, 2 with --check on drift."""
    client = api(ctx)
    body = {"document": _read(file), "prune": prune}
    plan = _post(client, "/apply/plan", body, str(file))
    if as_json:
        print_json(plan)
    else:
        print_plan(plan)
    if not plan["changes"]:
        if not as_json:
            out.print("no changes: the live state matches the file")
        return
    if check:
        raise CliError(
            f"the live state drifted from {file} ({len(plan['changes'])} change(s))",
            exit_code=DRIFT_EXIT,
        )
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("nothing applied: pass --yes to apply without a terminal")
        if not typer.confirm("apply these changes?", default=False):
            raise CliError("nothing applied")
    result = _post(client, "/apply", {**body, "expect": plan["fingerprint"]}, str(file))
    counts = result["counts"]
    out.print(
        f"applied: {counts['create']} created, {counts['update']} updated, "
        f"{counts['delete']} deleted"
    )


def export(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Write the live state as a pilothouse.yaml that applies back to no change."""
    document = api(ctx).request("GET", "/apply/export")["document"]
    if output is None:
        sys.stdout.write(document)
        return
    try:
        output.write_text(document)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror}") from None
    out.print(f"wrote {output}")


def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of pilothouse.yaml (for editor completion and validation)."""
    # Imported here: the models pull in the store and driver layers, which --help and the
    # HTTP commands never load (tests/test_cli.py).
    from pilothouse.apply.spec import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text)
    out.print(f"wrote {output}")
