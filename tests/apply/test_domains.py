"""An environment's `domains` in pilothouse.yaml: names normalised and unique across
environments, the plan (create, delete only with --prune, a change refused), export back to no
change (pure), and one run through the API (add_domain with PILOTHOUSE_DNS_TARGET)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.apply.load import load
from pilothouse.apply.plan import State, make_plan
from pilothouse.apply.state import desired_state, export_document
from pilothouse.config import Settings
from tests.apply.test_apply import count_writes
from tests.conftest import Api, one_store

TARGET = "edge.pilothouse.test"

DOC = """\
environments:
  prod:
    services:
      web: {}
      api: {}
    domains:
"""


def doc(*lines: str) -> str:
    return DOC + "".join(f"      {line}\n" for line in lines)


def desired(text: str) -> tuple[State, list[tuple[str, int, str]]]:
    document, marks = load(text)
    state, problems = desired_state(document, marks, {})
    return state, [(p.path, p.line, p.rule) for p in problems]


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        (
            "WWW.Example.com.: {service: web}",
            {"environment": "prod", "service": "web", "root": "example.com", "cdn_enabled": False},
        ),
        (
            "a.shop.co.uk: {service: api, root: shop.co.uk, cdn_enabled: true}",
            {"environment": "prod", "service": "api", "root": "shop.co.uk", "cdn_enabled": True},
        ),
    ],
)
def test_a_domain_is_normalised(line: str, fields: dict[str, Any]) -> None:
    state, problems = desired(doc(line))
    assert problems == []
    assert list(state["domain"].values()) == [fields]
    assert next(iter(state["domain"])) == line.split(":")[0].lower().rstrip(".")


@pytest.mark.parametrize(
    ("text", "path", "line", "rule"),
    [
        (doc("x.example.com: {service: nope}"), "environments.prod.domains.x.example.com.service",
         7, "no service nope in prod"),
        (doc("localhost: {service: web}"), "environments.prod.domains.localhost", 7,
         "must be a domain name like api.example.com"),
        (doc("a.example.com: {service: web, root: other.org}"),
         "environments.prod.domains.a.example.com", 7, "a.example.com is not inside other.org"),
        (
            doc("a.example.com: {service: web}")
            + "  dev:\n    services:\n      web: {}\n    domains:\n"
            "      A.example.com: {service: web}\n",
            "environments.dev.domains.A.example.com",
            12,
            "domain names are unique across environments",
        ),
    ],
)  # fmt: skip
def test_problems_name_the_place(text: str, path: str, line: int, rule: str) -> None:
    _, problems = desired(text)
    assert (path, line, rule) in problems


def test_plan_creates_updates_and_deletes_only_with_prune() -> None:
    state, _ = desired(doc("a.example.com: {service: web}", "b.example.com: {service: api}"))
    live = copy.deepcopy(state)
    assert make_plan(state, live).empty
    del live["domain"]["b.example.com"]
    live["domain"]["old.example.com"] = dict(state["domain"]["a.example.com"])
    live["domain"]["a.example.com"]["cdn_enabled"] = True
    plan = make_plan(state, live)
    assert sorted((c.action, c.kind, c.key) for c in plan.changes) == [
        ("create", "domain", "b.example.com"),
        ("update", "domain", "a.example.com"),
    ]
    assert list(plan.unmanaged) == [("domain", "old.example.com")]
    pruned = make_plan(state, live, prune=True)
    assert ("delete", "domain", "old.example.com") in [
        (c.action, c.kind, c.key) for c in pruned.changes
    ]


def test_domains_come_after_scaling_policies_and_before_backups() -> None:
    from pilothouse.apply.plan import KINDS

    assert KINDS.index("scaling_policy") + 1 == KINDS.index("domain") < KINDS.index("backup_target")


def test_export_applies_back_to_no_change() -> None:
    state, _ = desired(
        doc(
            "a.example.com: {service: web}",
            "a.shop.co.uk: {service: api, root: shop.co.uk, cdn_enabled: true}",
        )
    )
    exported = yaml.safe_dump(export_document(state), sort_keys=False)
    assert exported.count("root:") == 1 and exported.count("cdn_enabled") == 1
    again, problems = desired(exported)
    assert problems == []
    assert make_plan(again, state, prune=True).empty


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, role="api", dns_target=TARGET)


@one_store
def test_domains_through_the_api(api: Api) -> None:
    text = doc("shop.example.com: {service: web}")
    first = api.ok(api.post("/apply", {"document": text}))
    assert [(c["action"], c["kind"]) for c in first["changes"]][-1] == ("create", "domain")
    domain = api.ok(api.get("/domains/shop.example.com"))
    assert domain["app_target"] == "web" and domain["records"][0]["value"] == TARGET
    assert ("create", "domain") in {
        (e["action"], e["entity_type"]) for e in api.ok(api.get("/audit"))
    }

    writes = count_writes(api)
    assert api.ok(api.post("/apply", {"document": text}))["changes"] == []
    assert writes == []
    exported = api.ok(api.get("/apply/export"))["document"]
    assert "shop.example.com:" in exported
    assert api.ok(api.post("/apply/plan", {"document": exported}))["changes"] == []

    moved = api.post("/apply", {"document": text.replace("service: web", "service: api")})
    assert moved.status_code == 422, moved.text
    assert "cannot change in place" in moved.text
    assert api.ok(api.get("/domains/shop.example.com"))["app_target"] == "web"

    pruned = api.ok(api.post("/apply", {"document": DOC + "      {}\n", "prune": True}))
    assert [(c["action"], c["kind"]) for c in pruned["changes"]] == [("delete", "domain")]
    assert api.get("/domains/shop.example.com").status_code == 404
