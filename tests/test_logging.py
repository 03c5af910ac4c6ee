"""Secrets never reach logs or error responses."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pilothouse.app import create_app
from pilothouse.config import Settings
from pilothouse.core.logging import mask_secrets, mask_text

TOKEN = "ph_" + "S3cr3tT0kenValue_" * 2


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"auth failed for {TOKEN}", TOKEN),
        ("postgresql://app:hunter2@db:5432/x", "hunter2"),
        (f"nested {TOKEN}.", TOKEN),
    ],
)
def test_mask_text(text: str, hidden: str) -> None:
    assert hidden not in mask_text(text)


def test_mask_secrets_processor() -> None:
    event = {
        "event": f"token {TOKEN}",
        "password": "hunter2",
        "context": {"api_key": "k", "ok": "visible", "list": [TOKEN]},
    }
    out = mask_secrets(None, "info", event)
    text = repr(out)
    assert TOKEN not in text and "hunter2" not in text and "'k'" not in text
    assert "visible" in text


def test_unhandled_error_is_500_with_incident_and_masked_log(
    settings: Settings, admin_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings, migrate=False)

    async def boom() -> None:
        raise RuntimeError(f"exploded while using {admin_token}")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal" and "incident" in body["message"]
    assert admin_token not in response.text
    incident = body["message"].split("incident ")[1].split()[0]
    logged = capsys.readouterr().err
    assert incident in logged and "exploded while using ph_***" in logged
    assert admin_token not in logged


def test_tracebacks_from_any_logger_and_uncaught_errors_are_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """uvicorn logs an unhandled request error with the raw traceback through the standard
    library's logging; uncaught errors go to sys.excepthook: both pass the same masking."""
    import json
    import logging
    import sys

    from pilothouse.core.logging import configure, register_secrets

    configure("info")
    register_secrets(["sntl-trace-8c1d77"])
    try:
        raise RuntimeError("could not connect with sntl-trace-8c1d77")
    except RuntimeError as exc:
        logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=exc)
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "sntl-trace-8c1d77" not in err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert len(lines) == 2, err
    assert all("RuntimeError" in line["exception"] for line in lines)
    assert lines[0]["event"] == "Exception in ASGI application"
