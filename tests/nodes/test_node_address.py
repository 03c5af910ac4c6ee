"""Adding a node at an IPv6 address is refused with 422 naming the field and the rule (IPv6 is
not supported end to end: replica addresses, readiness probes, the router, the shim)."""

from __future__ import annotations

from tests.conftest import Api, one_store


@one_store
def test_node_add_refuses_an_ipv6_address(api: Api) -> None:
    body = {"name": "v6", "address": "2001:db8::5", "private_key": "x", "trust": None}
    response = api.post("/nodes", body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    rules = {d["field"]: d["rule"] for d in detail}
    assert "IPv6 is not supported" in rules["address"]
