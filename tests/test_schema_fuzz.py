"""Property-based API tests from our own OpenAPI schema: no input may cause a server error.

Schemathesis generates valid and invalid requests for every operation from /openapi.json and
sends them to a live server on a real database; each must be answered without a 5xx.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.conftest import LiveServer


def test_no_input_causes_a_server_error(live_server: LiveServer, admin_token: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {admin_token}"}
    # The event stream is long-lived by design; it has its own tests.
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if not op.path.endswith("/events")
    ]
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=live_server.url, headers=headers, checks=[not_a_server_error]
            )

        check()
