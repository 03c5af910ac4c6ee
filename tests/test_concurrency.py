"""Concurrent writers through a live server: no lost writes, no 500s, duplicates get 409."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import LiveServer


def _client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def test_racing_duplicate_names_get_one_201_and_409s(
    live_server: LiveServer, admin_token: str
) -> None:
    with _client(live_server, admin_token) as client:
        assert client.post("/environments", json={"name": "prod"}).status_code == 201

    def create(_: int) -> int:
        with _client(live_server, admin_token) as client:
            return client.post("/services", json={"environment": "prod", "name": "web"}).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(create, range(20)))
    assert sorted(codes) == [201] + [409] * 19, codes
    with _client(live_server, admin_token) as client:
        assert [s["name"] for s in client.get("/services").json()] == ["web"]


def test_concurrent_writers_all_land(live_server: LiveServer, admin_token: str) -> None:
    with _client(live_server, admin_token) as client:
        assert client.post("/environments", json={"name": "prod"}).status_code == 201

    def create(i: int) -> int:
        with _client(live_server, admin_token) as client:
            body = {"environment": "prod", "name": f"svc-{i}"}
            return client.post("/services", json=body).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(create, range(48)))
    assert codes == [201] * 48, codes
    with _client(live_server, admin_token) as client:
        names = {s["name"] for s in client.get("/services").json()}
        assert names == {f"svc-{i}" for i in range(48)}
        audit = client.get("/audit", params={"entity_type": "service", "limit": 1000}).json()
        assert sum(1 for a in audit if a["action"] == "create") == 48
