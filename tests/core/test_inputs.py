"""The input rules every route applies (core/inputs.py): table tests and properties."""

from __future__ import annotations

import json
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
    json_depth_exceeds,
    json_size_problem,
    raw_json_may_have_bad_text,
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


def _nested(depth: int) -> Any:
    """A document whose innermost container is at `depth` (the document itself at 0)."""
    doc: Any = []
    for _ in range(depth):
        doc = [doc]
    return doc


@pytest.mark.parametrize(
    "raw",
    [
        b'{"samples": [{"name": "a", "tags": {"k": "v"}, "value": 1}]}',
        b'{"samples": [{"name": "a\\u0000b", "value": 1}]}',  # a backslash, then "u0000"
        b'{"samples": [{"name": "a\\ud800", "value": 1}]}',
        b'{"samples": [{"name": "a\\u0000", "tags": {"k\\u0000": "v"}, "value": 1}]}',
        b'{"samples": [{"name": "a\\ud800\\udc00", "value": 1}]}',  # a valid pair
        '{"samples": [{"name": "caf\u00e9 \u2603", "value": 1}]}'.encode(),
        b'{"samples": [{"name": "\\uD83D\\uDE00", "value": 1}]}',
        b'{"samples": [{"name": "x", "tags": {"k": "\\u00000"}, "value": 1}]}',
        b'{"samples": [{"name": "x", "tags": {"\\uDFFF": "v"}, "value": 1}]}',
        b'"\xed\xa0\x80"',
        '{"a": "ok"}'.encode("utf-16"),
        json.dumps({"a": _nested(MAX_JSON_DEPTH - 2)}).encode(),
        json.dumps({"a": _nested(MAX_JSON_DEPTH - 1)}).encode(),
        json.dumps(_nested(MAX_JSON_DEPTH)).encode(),
        json.dumps(_nested(MAX_JSON_DEPTH - 1)).encode(),
    ],
)
def test_the_raw_fast_path_never_passes_what_find_bad_text_refuses(raw: bytes) -> None:
    document = json.loads(raw)
    if find_bad_text(document) is not None:
        assert raw_json_may_have_bad_text(raw, document)
    assert raw_json_may_have_bad_text(raw, document) or find_bad_text(document) is None


@pytest.mark.parametrize("depth", [0, 1, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 3])
def test_json_depth_exceeds_counts_as_find_bad_text(depth: int) -> None:
    refused = find_bad_text(_nested(depth)) is not None
    assert json_depth_exceeds(_nested(depth)) == refused == (depth >= MAX_JSON_DEPTH)
    assert not json_depth_exceeds("scalar")
    assert not json_depth_exceeds(7)


_texts = st.lists(
    st.sampled_from(["a", "\u00e9", "\x00", "\ud800", "\udfff", "\\", "u", "\U0001f600"])
    | st.text(max_size=3),
    max_size=4,
).map("".join)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=12,
)


@given(_json_values, st.booleans())
def test_raw_fast_path_agrees_with_find_bad_text(document: Any, ascii_only: bool) -> None:
    raw = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    decoded = json.loads(raw)
    assert raw_json_may_have_bad_text(raw, decoded) or find_bad_text(decoded) is None


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
