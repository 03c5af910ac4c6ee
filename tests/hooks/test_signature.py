"""Deploy webhook decisions as pure functions: signatures, events, rules, versions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.hooks.signature import (
    TOLERANCE,
    Ignored,
    Push,
    Refused,
    Rule,
    check_signature,
    match,
    parse_event,
    replay_key,
    sign,
    version_of,
)

SECRET = "a-shared-secret-of-some-length"
SHA = "0123456789abcdef0123456789abcdef01234567"
NOW = 1_800_000_000
BODY = json.dumps({"ref": "refs/heads/main", "commit": SHA}).encode()


def github(body: bytes = BODY, secret: str = SECRET, delivery: str = "d-1") -> dict[str, str]:
    return {"x-hub-signature-256": sign(secret, body), "x-github-delivery": delivery}


def generic(
    body: bytes = BODY, at: int = NOW, secret: str = SECRET, delivery: str = "g-1"
) -> dict[str, str]:
    stamp = str(at)
    return {
        "x-pilothouse-signature": sign(secret, body, stamp, delivery),
        "x-pilothouse-timestamp": stamp,
        "x-pilothouse-delivery": delivery,
    }


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (github(), BODY, ("github", "d-1")),
        (generic(), BODY, ("generic", "g-1")),
        (github(secret="wrong-secret"), BODY, Refused(401, "bad signature")),
        (github(), BODY + b" ", Refused(401, "bad signature")),  # body altered after signing
        (generic(secret="wrong-secret"), BODY, Refused(401, "bad signature")),
        (
            generic(at=NOW - TOLERANCE - 1),
            BODY,
            Refused(401, f"timestamp more than {TOLERANCE} s from the server's clock"),
        ),
        (
            generic(at=NOW + TOLERANCE + 1),
            BODY,
            Refused(401, f"timestamp more than {TOLERANCE} s from the server's clock"),
        ),
        (generic(at=NOW - TOLERANCE), BODY, ("generic", "g-1")),
        (
            {**generic(), "x-pilothouse-timestamp": str(NOW + 1)},
            BODY,
            Refused(401, "bad signature"),
        ),
        (
            {},
            BODY,
            Refused(401, "unsigned request: send X-Hub-Signature-256 or X-Pilothouse-Signature"),
        ),
        (github(delivery=""), BODY, Refused(400, "missing or malformed X-GitHub-Delivery")),
        (
            {k: v for k, v in generic().items() if k != "x-pilothouse-timestamp"},
            BODY,
            Refused(401, "missing or malformed X-Pilothouse-Timestamp"),
        ),
        # the delivery id is signed: a new id on a seen request breaks the signature
        (
            {**generic(), "x-pilothouse-delivery": "g-2"},
            BODY,
            Refused(401, "bad signature"),
        ),
        (
            {k: v for k, v in generic().items() if k != "x-pilothouse-delivery"},
            BODY,
            Refused(400, "missing or malformed X-Pilothouse-Delivery"),
        ),
        # non-ASCII headers are refused, never a crash
        (
            {**github(), "x-hub-signature-256": "sha256=\u00e9"},
            BODY,
            Refused(401, "bad signature"),
        ),
        (
            {**generic(), "x-pilothouse-signature": "sha256=\u00e9\u00ff"},
            BODY,
            Refused(401, "bad signature"),
        ),
        (
            {**generic(), "x-pilothouse-timestamp": "\u00b2"},
            BODY,
            Refused(401, "missing or malformed X-Pilothouse-Timestamp"),
        ),
        (
            {**generic(), "x-pilothouse-timestamp": "\u0661\u0662"},
            BODY,
            Refused(401, "missing or malformed X-Pilothouse-Timestamp"),
        ),
    ],
)
def test_check_signature(headers: dict[str, str], body: bytes, expected: object) -> None:
    assert check_signature(SECRET, headers, body, NOW) == expected


@settings(max_examples=15, deadline=None)
@given(st.binary(max_size=200), st.text(min_size=1, max_size=30))
def test_only_the_secret_signs(body: bytes, other: str) -> None:
    assert check_signature(SECRET, github(body), body, NOW) == ("github", "d-1")
    if other != SECRET:
        assert isinstance(check_signature(SECRET, github(body, other), body, NOW), Refused)


def test_replay_key() -> None:
    """GitHub signs only the body, so the body itself is what a replay repeats; the generic
    format signs its delivery id, so the id is enough."""
    key = replay_key("github", "d-1", BODY)
    assert key == replay_key("github", "d-2", BODY)  # a new delivery id does not help
    assert key != replay_key("github", "d-1", BODY + b" ")
    assert key.startswith("sha256=") and len(key) <= 100
    assert replay_key("generic", "g-1", BODY) == "g-1"
    assert replay_key("generic", "g-2", BODY) != replay_key("generic", "g-1", BODY)


def push_body(**extra: Any) -> bytes:
    return json.dumps(extra).encode()


@pytest.mark.parametrize(
    ("fmt", "event", "body", "expected"),
    [
        (
            "github",
            "push",
            push_body(ref="refs/heads/main", after=SHA, head_commit={"message": "fix"}),
            Push("branch", "main", SHA, message="fix"),
        ),
        (
            "github",
            "push",
            push_body(ref="refs/tags/v1.2.0", after=SHA),
            Push("tag", "v1.2.0", SHA),
        ),
        (
            "github",
            "push",
            push_body(ref="refs/heads/old", after="0" * 40, deleted=True),
            Ignored("a deleted ref or no ref"),
        ),
        ("github", "ping", push_body(zen="hi"), Ignored("ping")),
        ("github", "issues", push_body(), Ignored("event 'issues' is not deployed")),
        (
            "github",
            "workflow_run",
            push_body(
                action="completed",
                workflow_run={
                    "conclusion": "success",
                    "head_branch": "main",
                    "head_sha": SHA,
                    "id": 77,
                },
            ),
            Push("branch", "main", SHA, run_id="77"),
        ),
        (
            "github",
            "workflow_run",
            push_body(
                action="completed",
                workflow_run={"conclusion": "failure", "head_branch": "main", "head_sha": SHA},
            ),
            Ignored("workflow run not completed successfully"),
        ),
        (
            "generic",
            None,
            push_body(ref="refs/heads/main", commit=SHA, version="b42", run_id=9),
            Push("branch", "main", SHA, version="b42", run_id="9"),
        ),
        (
            "generic",
            None,
            push_body(ref="main", commit=SHA),
            Refused(422, "need ref (refs/heads/... or refs/tags/...) and commit (40 hex)"),
        ),
        ("generic", None, b"not json", Refused(400, "the body is not JSON")),
        ("generic", None, b"[1]", Refused(400, "the body is not a JSON object")),
    ],
)
def test_parse_event(fmt: str, event: str | None, body: bytes, expected: object) -> None:
    assert parse_event(fmt, event, body) == expected


RULES = [
    Rule("prod", "web", tag="v*"),
    Rule("staging", "web", branch="main"),
    Rule("preview", "web", branch="feature/*"),
]


@pytest.mark.parametrize(
    ("push", "expected"),
    [
        (Push("branch", "main", SHA), RULES[1]),
        (Push("tag", "v2.0.0", SHA), RULES[0]),
        (Push("branch", "feature/x", SHA), RULES[2]),
        (Push("branch", "v1", SHA), None),  # a branch never matches a tag rule
        (Push("branch", "mainline", SHA), None),
    ],
)
def test_first_matching_rule(push: Push, expected: Rule | None) -> None:
    assert match(RULES, push) == expected


@pytest.mark.parametrize(
    ("push", "expected"),
    [
        (Push("tag", "v1.2.3", SHA), ("v1.2.3", "v1.2.3")),
        (Push("tag", "release-7", SHA), ("release-7-0123456789ab", None)),
        (Push("branch", "feature/new ui", SHA), ("feature-new-ui-0123456789ab", None)),
        (Push("branch", "main", SHA, version="b42"), ("b42", None)),
    ],
)
def test_version_of(push: Push, expected: tuple[str, str | None]) -> None:
    assert version_of(push) == expected
