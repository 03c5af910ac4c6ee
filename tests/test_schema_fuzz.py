"""Property-based API tests from our own OpenAPI schema, with every schemathesis check.

Schemathesis generates valid and invalid requests for every operation of /openapi.json and sends
them to a live server on a real database (SQLite and PostgreSQL). Every answer is checked: no 5xx;
status code, content type, headers and body as the schema declares them (error bodies included);
valid data accepted, invalid data refused; `Allow` listing the path's methods. Then it chains
operations through the links it infers (create, read, update, delete) and checks those steps
too. Its settings, shared with `st run --checks all` from the repository root, are in
schemathesis.toml (no NUL in generated strings: the API refuses it everywhere; the few rules
JSON Schema cannot state). PILOTHOUSE_FUZZ_EXAMPLES raises the number of examples.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("PILOTHOUSE_FUZZ_EXAMPLES", "5"))
QUIET = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def _schema(server: LiveServer, token: str) -> Any:
    config = SchemathesisConfig.from_path(ROOT / "schemathesis.toml")
    config.projects.default.update(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}
    )
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)


def test_every_operation_answers_as_its_schema_says(
    live_server: LiveServer, admin_token: str
) -> None:
    schema = _schema(live_server, admin_token)
    headers = {"Authorization": f"Bearer {admin_token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 60
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @QUIET
            def check(case: Any) -> None:
                case.call_and_validate(base_url=live_server.url, headers=headers)

            try:
                check()
            except Unsatisfiable:
                continue  # nothing to make invalid (e.g. only free-form path parameters)
            except Exception as exc:  # the (shrunk) failure, with its reproduction
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)


def test_linked_operations_answer_as_the_schema_says(
    live_server: LiveServer, admin_token: str
) -> None:
    schema = _schema(live_server, admin_token)
    headers = {"Authorization": f"Bearer {admin_token}"}
    machine = schema.as_state_machine()

    class Linked(machine):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": live_server.url, "headers": headers}

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            kwargs.update(base_url=live_server.url, headers=headers)
            super().validate_response(response, case, additional_checks, **kwargs)

    Linked.run(
        settings=settings(
            max_examples=EXAMPLES * 4,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
