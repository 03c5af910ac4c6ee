"""Logging in to the dashboard from a TestClient, and the pages every role is shown."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def login(client: TestClient, token: str, next: str = "/") -> Any:
    """Log in through the form (as a browser does); returns the final response."""
    form = client.get("/login", params={"next": next})
    nonce = CSRF.search(form.text)
    assert nonce, form.text
    return client.post(
        "/login",
        data={"token": token, "csrf": nonce.group(1), "next": next},
        follow_redirects=False,
    )


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def browser(app: Any, token: str | None = None, **kw: Any) -> TestClient:
    """A new client (its own cookie jar) on the running app of the `api` fixture (which
    started its lifespan: the store is open), logged in when a token is given."""
    client = TestClient(app, **kw)
    if token is not None:
        done = login(client, token)
        assert done.status_code == 303, done.text
    return client
