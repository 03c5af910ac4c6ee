"""A router port is one service's (issue 12.2): 409 at create and update naming the holder,
whether it is another pilothouse service (any environment) or another process on the host."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.conftest import Api, free_port


def _service(
    api: Api, env: str, name: str, port: int | None, command: str | None = "run {port}"
) -> Any:
    config = {"router": "nginx", "router_port": port} if port else {}
    return api.post(
        "/services",
        {"environment": env, "name": name, "command": command, "driver_config": config},
    )


@pytest.fixture
def envs(api: Api) -> None:
    for name in ("prod", "staging"):
        api.ok(api.post("/environments", {"name": name}), 201)


@pytest.fixture
def listener() -> Iterator[int]:
    """A port held by a real listening socket of this (test) process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_two_services_cannot_share_a_router_port(api: Api, envs: None) -> None:
    port = free_port()
    api.ok(_service(api, "prod", "shop", port), 201)
    for env in ("prod", "staging"):
        refused = _service(api, env, "blog", port)
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["message"] == (
            f"router port {port} is already used by service 'shop' in environment 'prod'"
        )
        assert body["detail"]["field"] == "driver_config.router_port"
    blog = api.ok(_service(api, "staging", "blog", None), 201)
    refused = api.patch(
        f"/services/{blog['id']}", {"driver_config": {"router": "nginx", "router_port": port}}
    )
    assert refused.status_code == 409 and "service 'shop'" in refused.json()["message"]
    # The holder itself keeps its port through an update, and a deleted service frees it.
    api.ok(
        api.patch(
            "/services/shop",
            {"driver_config": {"router": "nginx", "router_port": port, "max_surge": 2}},
        )
    )
    api.ok(api.delete("/services/shop"), 204)
    api.ok(
        api.patch(
            f"/services/{blog['id']}", {"driver_config": {"router": "nginx", "router_port": port}}
        )
    )


def test_the_holder_is_not_named_to_who_cannot_see_it(api: Api, envs: None) -> None:
    port = free_port()
    api.ok(_service(api, "prod", "shop", port), 201)
    operator = api.as_(api.user("olga", "operator"))
    api.ok(api.post("/environments/staging/grants", {"user": "olga"}), 204)
    # (no command: defining one is an admin's; the router settings are an operator's)
    refused = _service(operator, "staging", "blog", port, command=None)
    assert refused.status_code == 409
    message = refused.json()["message"]
    assert message == f"router port {port} is already used by another pilothouse service"
    assert "shop" not in refused.text and "prod" not in refused.text


def test_a_port_held_by_another_process_is_refused(api: Api, envs: None, listener: int) -> None:
    refused = _service(api, "prod", "shop", listener)
    assert refused.status_code == 409, refused.text
    name = psutil.Process(os.getpid()).name()
    assert refused.json()["message"] == (
        f"router port {listener} is in use on this host by {name} (pid {os.getpid()})"
    )
    shop = api.ok(_service(api, "prod", "shop", None), 201)
    refused = api.patch(
        f"/services/{shop['id']}", {"driver_config": {"router": "nginx", "router_port": listener}}
    )
    assert refused.status_code == 409 and f"pid {os.getpid()}" in refused.json()["message"]
