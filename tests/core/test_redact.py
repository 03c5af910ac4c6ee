"""The masking rule: which secrets can be masked, and that masking never leaks or garbles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.core import redact

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "Zm9v==\n"
    "-----END PRIVATE KEY-----\n"
)


@pytest.mark.parametrize(
    ("secret", "ok"),
    [
        ("x", False),
        ("1234567", False),
        ("12345678", True),
        ("   1234567   ", False),
        ("abc\ndef", False),  # two short lines: would leak line by line
        ("abcd\nefgh", False),  # 8 characters only in short lines
        ("abcdefgh\nxy", True),  # at most 2 characters can show, and only line by line
        ("abcdefgh\nijklmnop", True),
        (PEM, True),
        ("", False),
    ],
)
def test_which_secrets_can_be_masked(secret: str, ok: bool) -> None:
    assert (redact.unmaskable(secret) is None) == ok


def test_short_values_never_garble_output() -> None:
    pats = redact.patterns(["a", "ab"])
    assert pats == []
    assert redact.scrub("a cat sat", pats) == "a cat sat"


def test_multi_line_secrets_are_masked_whole_and_line_by_line() -> None:
    pats = redact.patterns([PEM])
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    assert redact.scrub(f"key:\n{PEM}", pats) == "key:\n********"
    assert redact.scrub(f"line {body}", pats) == "line ********"
    assert "BEGIN PRIVATE KEY" not in redact.scrub("-----BEGIN PRIVATE KEY-----", pats)


def test_scrub_value_walks_structures() -> None:
    pats = redact.patterns(["sntl-abcdef"])
    got = redact.scrub_value({"a": ["x sntl-abcdef", 1], "sntl-abcdef": None}, pats)
    assert got == {"a": ["x ********", 1], "********": None}


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_a_maskable_secret_never_survives_scrubbing(secret: str, before: str, after: str) -> None:
    if redact.unmaskable(secret) is None:
        out = redact.scrub(before + secret + after, redact.patterns([secret]))
        assert secret not in out
