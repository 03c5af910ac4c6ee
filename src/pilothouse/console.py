"""CLI output: tables for lists, JSON on request, one line for errors."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _width() -> int | None:
    """Rich assumes 80 columns off a terminal; piped output gets COLUMNS or 160 instead."""
    if sys.stdout.isatty():
        return None
    try:
        return int(os.environ.get("COLUMNS", "160"))
    except ValueError:
        return 160


#: Terminal escape sequences: CSI (colours, cursor moves, erase), OSC (titles, links) and the
#: other ESC forms, 7-bit and 8-bit.
ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x9d[^\x07\x1b]*(?:\x07|\x1b\\)?"
)
CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` safe for a terminal: escape sequences removed, other control characters (new
    lines, carriage returns, backspaces) shown as \\xNN, so a line cannot erase, overwrite,
    hide or forge other lines."""
    return CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", ESCAPES.sub("", text))


out = Console(highlight=False, soft_wrap=True, width=_width())
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    out.out(json.dumps(data, indent=2, sort_keys=True, default=str), highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        return printable(value[:19].replace("T", " "))
    return printable(str(value))


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str = "") -> None:
    """A table of the given columns; says so when there is nothing to show."""
    if not rows:
        out.print(f"no {title or 'records'}")
        return
    table = Table(title=None, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Text, not markup: a stored value cannot style, link or forge what is shown
        table.add_row(*(Text(_cell(row.get(c))) for c in columns))
    out.print(table)


def print_record(record: dict[str, Any]) -> None:
    """Key: value lines for one record."""
    width = max((len(k) for k in record), default=0)
    for key, value in record.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else _cell(value)
        out.print(f"{printable(key).ljust(width)}  {shown}", markup=False)
