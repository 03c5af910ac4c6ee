"""Reading pilothouse.yaml: every problem at once, each with its line and column; the desired
state and the export agree (pure, no store)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.apply.load import DocumentInvalid, load
from pilothouse.apply.plan import Secret, make_plan
from pilothouse.apply.spec import Document, json_schema
from pilothouse.apply.state import desired_state, digest, digest_key, export_document
from pilothouse.core.crypto import Keyring
from pilothouse.errors import ValidationFailed

ROOT = Path(__file__).resolve().parents[2]

BAD = """\
version: 1
environments:
  prod:
    type: prod
    services:
      web:
        target_replicas: 500
        colour: blue
        resources:
          cpu_cores: 64
  bad name:
    type: staging
"""


def problems(text: str) -> list[tuple[int, int, str, str]]:
    with pytest.raises(DocumentInvalid) as caught:
        load(text)
    return [(p.line, p.column, p.path, p.rule) for p in caught.value.problems]


def test_every_problem_at_once_with_line_and_column() -> None:
    found = problems(BAD)
    where = [(line, column, path) for line, column, path, _ in found]
    assert where == [
        (4, 11, "environments.prod.type"),
        (7, 26, "environments.prod.services.web.target_replicas"),
        (8, 9, "environments.prod.services.web.colour"),
        (10, 22, "environments.prod.services.web.resources.cpu_cores"),
        (11, 3, "environments.bad name.[key]"),
    ]
    rules = {path: rule for _, _, path, rule in found}
    assert rules["environments.prod.services.web.colour"] == "unknown key"
    assert "between 1 and 100" in rules["environments.prod.services.web.target_replicas"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nenvironments: [\n", (3, 1, "", "not valid YAML")),
        ("- a\n- b\n", (1, 1, "", "the document must be a mapping")),
        ("version: 2\n", (1, 10, "version", "Input should be 1")),
        (
            "environments:\n  a: {}\n  a: {type: nope}\n",
            (3, 3, "environments.a", "duplicate key"),
        ),
        (
            "environments:\n  a:\n    backups:\n      db: {schedule: '0 2 * * *'}\n",
            (4, 11, "environments.a.backups.db.dsn", "required"),
        ),
    ],
)
def test_problem_positions(text: str, expected: tuple[int, int, str, str]) -> None:
    line, column, path, rule = problems(text)[0]
    assert (line, column, path) == expected[:3]
    assert rule.startswith(expected[3])


def test_duplicate_keys_and_schema_problems_are_reported_together() -> None:
    text = "environments:\n  a: {type: nope}\n  a: {type: nope}\n"
    assert problems(text)[0][3] == "duplicate key"
    assert len(problems(text)) == 2


FULL = """\
version: 1
environments:
  prod:
    type: production
    requirements:
      DB: {rule: postgres_dsn}
    services:
      web:
        image: registry.example/web:1
        target_replicas: 2
        resources: {cpu_cores: 1.5}
        driver_config: {router: nginx, router_port: 8080}
        health_check: {path: /up, thresholds: {response_ms: 500}}
        scaling: {mode: target, max_instances: 6, metric_tags: {tier: web}}
    backups:
      main-db:
        dsn: {variable: DB}
        retention: {daily: 7}
    alert_rules:
      slow:
        service: web
        metric: latency
        expression: p95
        window: 10m
        critical: 2
channels:
  ops:
    kind: webhook
    secrets:
      url: {variable: HOOK, environment: prod}
      secret: {variable: HOOK_KEY, environment: prod}
    deploy_events: [failed]
"""
KEY = b"k" * 32
VALUES = {
    ("prod", "DB"): "postgresql://u:p@db/app",
    ("prod", "HOOK"): "https://hooks.example/x",
    ("prod", "HOOK_KEY"): "hook-signing-key",
}


def test_secrets_resolve_to_digests_never_values() -> None:
    document, marks = load(FULL)
    state, found = desired_state(document, marks, VALUES, secret_key=KEY)
    assert found == []
    dsn = state["backup_target"]["main-db"]["dsn"]
    assert isinstance(dsn, Secret) and dsn.source == "variable DB of prod"
    dumped = repr(state)
    assert all(value not in dumped for value in VALUES.values())
    assert state["channel"]["ops"]["config"] == {}  # url and secret are both references


def test_unresolved_and_inline_secrets_are_problems_with_positions() -> None:
    text = FULL.replace("secret: {variable: HOOK_KEY, environment: prod}", "url2: x").replace(
        "    deploy_events", "    config: {url: 'https://inline.example/'}\n    deploy_events"
    )
    document_text = text.replace("url2: x", "secret: {variable: NOPE}")
    document, marks = load(document_text)
    _, found = desired_state(document, marks, VALUES, secret_key=KEY)
    rules = {p.path: (p.line, p.rule) for p in found}
    assert rules["channels.ops.secrets.secret.environment"][1].startswith("required")
    assert rules["channels.ops.config.url"][1].startswith("a credential")


def test_export_applies_back_to_no_change() -> None:
    document, marks = load(FULL)
    state, _ = desired_state(document, marks, VALUES, secret_key=KEY)
    exported = yaml.safe_dump(export_document(state), sort_keys=False)
    again, again_marks = load(exported)
    round_trip, found = desired_state(again, again_marks, VALUES, secret_key=KEY)
    assert found == []
    assert make_plan(round_trip, state, prune=True).empty
    assert "postgresql://" not in exported


def test_json_schema_comes_from_the_models() -> None:
    schema = json_schema()
    assert schema["title"] == "pilothouse.yaml"
    assert set(schema["properties"]) == set(Document.model_fields)
    json.dumps(schema)  # serialisable


def test_example_file_is_valid() -> None:
    document, _ = load((ROOT / "examples" / "pilothouse.yaml").read_text())
    assert "sample" in document.environments["demo"].services


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-5, 500), st.text(max_size=8)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(
                st.sampled_from(
                    [
                        "version",
                        "environments",
                        "prod",
                        "services",
                        "web",
                        "type",
                        "backups",
                        "dsn",
                        "channels",
                        "kind",
                        "secrets",
                        "resources",
                        "cpu_cores",
                        "x",
                    ]
                ),
                inner,
                max_size=3,
            ),
        ),
        max_leaves=12,
    )
)
def test_any_document_loads_or_names_its_problems(data: object) -> None:
    text = yaml.safe_dump(data)
    try:
        load(text)
    except DocumentInvalid as exc:
        lines = text.count("\n") + 1
        assert exc.problems and all(1 <= p.line <= lines and p.column >= 1 for p in exc.problems)


def test_secret_digests_are_keyed_by_the_servers_key() -> None:
    """A plan cannot confirm a guessed secret: the digest is an HMAC under a key derived from
    the server's data key, not a plain SHA-256, so it differs between servers."""
    ring = Keyring(current=b"k" * 8, keys={b"k" * 8: b"\x01" * 32})
    other = Keyring(current=b"o" * 8, keys={b"o" * 8: b"\x02" * 32})
    value = VALUES[("prod", "DB")]
    keyed = digest(value, digest_key(ring))
    assert keyed != hashlib.sha256(value.encode()).hexdigest()
    assert keyed != digest(value, digest_key(other))
    assert keyed == digest(value, digest_key(ring))

    document, marks = load(FULL)
    state, _ = desired_state(document, marks, VALUES, secret_key=digest_key(ring))
    assert state["backup_target"]["main-db"]["dsn"].digest == keyed
    # the same value under the same key: unchanged; another value: changed
    live = copy.deepcopy(state)
    assert make_plan(state, live).empty
    live["backup_target"]["main-db"]["dsn"] = Secret(digest("postgresql://other", digest_key(ring)))
    changed = make_plan(state, live).changes
    assert [(c.kind, [f.path for f in c.fields]) for c in changed] == [("backup_target", ["dsn"])]


def test_a_secret_reference_needs_the_key() -> None:
    document, marks = load(FULL)
    with pytest.raises(ValidationFailed, match="master key"):
        desired_state(document, marks, VALUES)
