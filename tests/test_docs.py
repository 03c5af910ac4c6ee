"""The docs match the code: docs/api.md's route table and README's CLI table."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from typer.main import get_command

from pilothouse.cli import app as cli_app
from pilothouse.config import Settings
from tests import docs_routes

ROOT = Path(__file__).resolve().parent.parent


def test_api_md_route_table_lists_every_route() -> None:
    schema = docs_routes.openapi_schema()
    document = docs_routes.API_DOC.read_text(encoding="utf-8")
    expected = docs_routes.render(document, docs_routes.route_table(schema))
    assert document == expected, (
        f"docs/api.md's route table differs from the API; run `{docs_routes.COMMAND}`"
    )


def test_route_table_has_one_row_per_operation_with_its_summary() -> None:
    schema = docs_routes.openapi_schema()
    table = docs_routes.route_table(schema)
    rows = table.splitlines()[2:]
    operations = docs_routes.routes(schema)
    assert len(rows) == len(operations)
    for (method, path, summary, _), row in zip(operations, rows, strict=True):
        assert summary, f"{method} {path} has no summary (give its route a docstring or summary=)"
        shown = path.removeprefix(docs_routes.PREFIX)
        assert row.startswith(f"| {method} | `{shown}` |"), row
    # The table is not empty and covers both prefixed and root routes.
    assert any("`/deployments`" in row for row in rows)
    assert any("`/healthz`" in row for row in rows)


def test_render_replaces_only_between_markers() -> None:
    document = f"intro\n{docs_routes.BEGIN}\nold\n{docs_routes.END}\noutro\n"
    assert docs_routes.render(document, "new") == (
        f"intro\n{docs_routes.BEGIN}\nnew\n{docs_routes.END}\noutro\n"
    )


def _cli_commands() -> set[str]:
    """Every leaf command of ``pilothouse --help``, e.g. ``backup target add``."""
    found: set[str] = set()

    def walk(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, f"{prefix}{name} ")
            else:
                found.add(f"{prefix}{name}")

    walk(get_command(cli_app), "")
    return found


def _readme_commands() -> set[str]:
    """The commands README's CLI table names: `pilothouse a b|c ARGS` is `a b` and `a c`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## CLI\n", 1)[1].split("\n## ", 1)[0]
    listed: set[str] = set()
    for cell in re.findall(r"^\| `pilothouse ([^`]*)`", section, flags=re.MULTILINE):
        words: list[list[str]] = []
        for token in cell.split():
            if not re.fullmatch(r"[a-z][a-z-]*((\\?\|)[a-z][a-z-]*)*", token):
                break
            words.append(re.split(r"\\?\|", token))
        listed |= {" ".join(combo) for combo in itertools.product(*words)}
    return listed


def test_readme_cli_table_lists_every_command() -> None:
    commands = _cli_commands()
    listed = _readme_commands()
    missing = sorted(commands - listed)
    unknown = sorted(listed - commands)
    assert not missing, f"README's CLI table lacks the commands {missing}"
    assert not unknown, f"README's CLI table lists commands that do not exist: {unknown}"


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    missing = [
        f"PILOTHOUSE_{name.upper()}"
        for name in Settings.model_fields
        if f"`PILOTHOUSE_{name.upper()}`" not in section
    ]
    assert not missing, f"README's Configuration table lacks {missing}"
