"""docs/config.md documents every key of pilothouse.yaml, generated from the schema."""

from __future__ import annotations

import json
from pathlib import Path

from pilothouse.apply.spec import json_schema
from tests import docs_config

ROOT = Path(__file__).resolve().parents[2]


def test_config_md_key_reference_is_current() -> None:
    document = docs_config.CONFIG_DOC.read_text(encoding="utf-8")
    expected = docs_config.render(document, docs_config.reference())
    assert document == expected, f"docs/config.md is stale; run `{docs_config.COMMAND}`"


def test_every_key_has_a_row_and_a_description() -> None:
    rows = docs_config.rows(json_schema())
    keys = [row.split("`")[1] for row in rows]
    for key in (
        "version",
        "environments.<name>.services.<name>.driver_config",
        "environments.<name>.backups.<name>.dsn.variable",
        "channels.<name>.secrets",
    ):
        assert key in keys
    assert all(not row.endswith("|  |") for row in rows), "a key without a description"


def test_shipped_schema_file_is_current() -> None:
    shipped = json.loads((ROOT / "docs" / "pilothouse.schema.json").read_text())
    assert shipped == json_schema(), "run `pilothouse schema -o docs/pilothouse.schema.json`"
