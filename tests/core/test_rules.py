"""Seed validation rules: every range at min-1, min, max, max+1; formats; properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.core import rules
from pilothouse.errors import ValidationFailed

RANGE_CASES = [
    # field, below-min, min, max, above-max
    ("target_replicas", 0, 1, 100, 101),
    ("cpu_cores", 0.49, 0.5, 32, 32.01),
    ("memory_mb", 511, 512, 65536, 65537),
    ("gpu_units", -1, 0, 8, 9),
    ("storage_gb", 0, 1, 1000, 1001),
]


@pytest.mark.parametrize(("field", "below", "low", "high", "above"), RANGE_CASES)
def test_ranges_at_their_edges(
    field: str, below: float, low: float, high: float, above: float
) -> None:
    assert rules.check_range(field, low) == low
    assert rules.check_range(field, high) == high
    for bad in (below, above):
        with pytest.raises(ValidationFailed) as info:
            rules.check_range(field, bad)
        assert info.value.field == field
        assert "between" in info.value.rule


def test_cpu_accepts_fractions() -> None:
    assert rules.check_range("cpu_cores", 1.5) == 1.5


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(ValidationFailed):
        rules.check_range("gpu_units", True)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a", True),
        ("A-b_9", True),
        ("x" * 100, True),
        ("x" * 101, False),
        ("", False),
        ("has space", False),
        ("dot.name", False),
        ("slash/name", False),
        ("ünïcode", False),
    ],
)
def test_names(value: str, ok: bool) -> None:
    if ok:
        assert rules.check_name(value) == value
    else:
        with pytest.raises(ValidationFailed, match="1-100 characters"):
            rules.check_name(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("i", True), ("i" * 500, True), ("i" * 501, False), ("", False), ("a b", False)],
)
def test_images(value: str, ok: bool) -> None:
    if ok:
        assert rules.check_image(value) == value
    else:
        with pytest.raises(ValidationFailed):
            rules.check_image(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a" * 40, True),
        ("0123456789abcdefABCDEF0123456789abcdef01", True),
        ("a" * 39, False),
        ("a" * 41, False),
        ("g" * 40, False),
        ("", False),
    ],
)
def test_commit_sha(value: str, ok: bool) -> None:
    if ok:
        assert rules.check_commit_sha(value) == value.lower()
    else:
        with pytest.raises(ValidationFailed, match="40 hexadecimal"):
            rules.check_commit_sha(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("v1.2.0", True),
        ("v10.20.300", True),
        ("1.2.0", False),
        ("v1.2", False),
        ("v1.2.0-rc1", False),
        ("V1.2.0", False),
    ],
)
def test_git_tag(value: str, ok: bool) -> None:
    if ok:
        assert rules.check_git_tag(value) == value
    else:
        with pytest.raises(ValidationFailed, match=r"vX\.Y\.Z"):
            rules.check_git_tag(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("sha256:" + "0" * 64, True),
        ("sha256:" + "f" * 63, False),
        ("sha256:" + "f" * 65, False),
        ("sha512:" + "f" * 64, False),
        ("sha256:" + "F" * 64, False),
    ],
)
def test_image_digest(value: str, ok: bool) -> None:
    if ok:
        assert rules.check_image_digest(value) == value
    else:
        with pytest.raises(ValidationFailed):
            rules.check_image_digest(value)


@pytest.mark.parametrize(
    ("length", "kept"), [(0, 0), (499, 499), (500, 500), (501, 500), (5000, 500)]
)
def test_commit_message_kept_to_500(length: int, kept: int) -> None:
    assert len(rules.keep_commit_message("m" * length)) == kept


@given(st.text(min_size=0, max_size=120))
def test_name_rule_matches_its_definition(value: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    expected = 1 <= len(value) <= 100 and set(value) <= allowed
    try:
        rules.check_name(value)
        accepted = True
    except ValidationFailed:
        accepted = False
    assert accepted == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_cpu_rule_matches_its_definition(value: float) -> None:
    try:
        rules.check_range("cpu_cores", value)
        accepted = True
    except ValidationFailed:
        accepted = False
    assert accepted == (0.5 <= value <= 32)
