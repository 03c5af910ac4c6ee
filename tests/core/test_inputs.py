"""The input rules every route applies (core/inputs.py): table tests and properties."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from pilothouse.core.inputs import (
    MAX_JSON_DEPTH,
    NOT_NULL_RULE,
    NUL_RULE,
    SURROGATE_RULE,
    Flag,
    IsoDateTime,
    JsonSettings,
    NotBool,
    NotNull,
    find_bad_text,
    json_size_problem,
    text_problem,
)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"a": "ok", "b": [1, "fine", None]}, None),
        ("a\x00b", ("body", NUL_RULE)),
        ({"name": "x\ud800"}, ("name", SURROGATE_RULE)),
        ({"config": {"hosts": ["ok", "b\x00d"]}}, ("config.hosts.1", NUL_RULE)),
        ({"values": {"K\x00": "v"}}, ("values", f"keys {NUL_RULE}")),
        ({"emoji": "\U0001f600 paired surrogates are fine"}, None),
        ({"a": "x\x00", "b": "y\x00"}, ("a", NUL_RULE)),  # the first one, in document order
    ],
)
def test_find_bad_text(document: Any, expected: tuple[str, str] | None) -> None:
    assert find_bad_text(document) == expected


def test_deep_documents_are_refused_without_recursion() -> None:
    deep: Any = "leaf"
    for _ in range(10 * MAX_JSON_DEPTH):
        deep = [deep]
    field, rule = find_bad_text({"a": deep}) or ("", "")
    assert field.startswith("a.0.0") and "deeper" in rule


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_text_without_nul_or_lone_surrogates_is_accepted(text: str) -> None:
    assert text_problem(text) is None
    assert find_bad_text({"k": [text]}) is None


@given(st.text(), st.text(), st.sampled_from(["\x00", "\ud800", "\udfff"]))
def test_any_nul_or_lone_surrogate_is_found(before: str, after: str, bad: str) -> None:
    assert text_problem(before + bad + after) is not None


def test_json_size_problem() -> None:
    assert json_size_problem({"k": "x" * 100}) is None
    assert "65536" in (json_size_problem({"k": "x" * 70_000}) or "")


class Update(BaseModel):
    config: NotNull[Annotated[dict[str, Any], JsonSettings]] = Field(default=None)
    count: NotNull[Annotated[int, Field(ge=0), NotBool]] = Field(default=None)
    flag: NotNull[Flag] = Field(default=None)
    at: IsoDateTime | None = None


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"config": None}, "config", NOT_NULL_RULE),
        ({"count": None}, "count", NOT_NULL_RULE),
        ({"count": -1}, "count", "greater than or equal to 0"),
        ({"count": True}, "count", "not true or false"),
        ({"flag": 1}, "flag", "valid boolean"),
        ({"config": {"k": "x" * 70_000}}, "config", "65536"),
        ({"at": "0.5"}, "at", "ISO 8601"),
        ({"at": 1700000000}, "at", "ISO 8601"),
        ({"at": "2030-01-01T00:00:00"}, "at", "time zone"),
    ],
)
def test_update_fields_refuse(body: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        Update.model_validate(body)
    (error,) = info.value.errors()
    assert error["loc"] == (field,) and rule in error["msg"], error


def test_update_fields_accept_and_omit() -> None:
    assert Update.model_validate({}).model_dump(exclude_unset=True) == {}
    parsed = Update.model_validate(
        {"config": {}, "count": 2.0, "flag": False, "at": "2030-01-01T00:00:00Z"}
    )
    assert parsed.count == 2 and parsed.flag is False and parsed.at is not None
    schema = Update.model_json_schema()["properties"]
    assert schema["count"] == {"minimum": 0, "title": "Count", "type": "integer"}
    assert "default" not in schema["config"] and "anyOf" not in schema["flag"]
