"""Channels (issue 11.3 and 11.11): owned records (404 for whoever may not see them, before any
role check), credentials sealed with the keyring and rotated, masked everywhere; settings
validated when written; one bad channel never silences the others (isolated, 3 tries), and
each channel's last failure is visible."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse.alerts import service as alerts
from pilothouse.alerts.models import NotificationChannel
from pilothouse.config import Settings
from pilothouse.core.crypto import load_keyring, rotate_key_file
from pilothouse.core.db import Database
from pilothouse.rotation import reseal_all
from pilothouse.setup import ensure_master_key
from tests.conftest import Api

HMAC_KEY = "sntl-hmac-3Jq9"
SLACK_TOKEN = "sntl-slack-T0B0x"
SMTP_PASSWORD = "sntl-smtp-88aa"
URL_TOKEN = "sntl-urltok-5c1"


class Receiver:
    """Answers each POST with the next status of `statuses` (the last one repeats)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses) or [204]
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(json.loads(body))
                status = outer.statuses[min(len(outer.bodies), len(outer.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _key(settings: Settings) -> None:
    ensure_master_key(settings.master_key_path)


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "RETRY_DELAYS", (0.0, 0.0))


def webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "hook", "kind": "webhook", "config": {"url": url, "secret": HMAC_KEY}, **extra}


def test_channels_are_owned_records(api: Api, world: dict[str, Any]) -> None:
    api.ok(api.post("/channels", webhook("https://hooks.example.com/x")), 201)
    api.ok(
        api.post(
            "/channels",
            {
                "name": "prod-chat",
                "kind": "slack",
                "environment": "prod",
                "config": {"url": f"https://hooks.slack.com/services/{SLACK_TOKEN}"},
            },
        ),
        201,
    )
    outsider = api.as_(api.user("olga", "operator"))
    viewer = api.as_(api.user("vic", "viewer"))
    granted = api.as_(api.user("gus", "operator"))
    api.ok(api.post("/environments/prod/grants", {"user": "gus"}), 204)

    for who in (outsider, viewer):
        assert who.ok(who.get("/channels")) == []
        for name in ("hook", "prod-chat", "never-existed"):
            # the same 404 whether it exists or not: the role check comes after the lookup
            assert who.get(f"/channels/{name}").status_code == 404
            assert who.delete(f"/channels/{name}").status_code == 404
            assert who.post(f"/channels/{name}/test").status_code == 404
            assert who.patch(f"/channels/{name}", {"is_active": False}).status_code == 404
    assert [c["name"] for c in granted.ok(granted.get("/channels"))] == ["prod-chat"]
    assert granted.delete("/channels/prod-chat").status_code == 403
    assert granted.get("/channels/hook").status_code == 404
    assert [c["name"] for c in api.ok(api.get("/channels"))] == ["hook", "prod-chat"]


def test_credentials_are_sealed_masked_and_rotated(
    api: Api, world: dict[str, Any], settings: Settings, db_url: str
) -> None:
    receiver = Receiver(204)
    try:
        url = receiver.url + f"?token={URL_TOKEN}"
        api.ok(api.post("/channels", webhook(url)), 201)
        api.ok(
            api.post(
                "/channels",
                {
                    "name": "mail",
                    "kind": "email",
                    "config": {
                        "host": "127.0.0.1",
                        "port": 2525,
                        "to": ["oncall@example.org"],
                        "username": "pilothouse",
                        "password": SMTP_PASSWORD,
                    },
                },
            ),
            201,
        )
        shown = api.ok(api.get("/channels"))
        by_name = {c["name"]: c for c in shown}
        assert by_name["hook"]["config"] == {
            "url": receiver.url.rsplit("/", 1)[0] + "/***",
            "secret": "***",
        }
        assert by_name["mail"]["config"]["password"] == "***"
        everything = " ".join(
            api.get(p).text for p in ("/channels", "/channels/hook", "/audit?limit=1000")
        )
        for secret in (HMAC_KEY, SMTP_PASSWORD, URL_TOKEN):
            assert secret not in everything

        async def stored() -> list[tuple[Any, ...]]:
            db = Database(db_url)
            try:
                async with db.session() as session:
                    rows = await session.execute(sa.select(NotificationChannel))
                    return [tuple(r) for r in rows]
            finally:
                await db.dispose()

        raw = repr(asyncio.run(stored()))
        for secret in (HMAC_KEY, SMTP_PASSWORD, URL_TOKEN):
            assert secret not in raw

        # keys rotate re-seals them, and delivery still works with the new key
        old_ids = {c.key_id for (c,) in asyncio.run(stored()) if c.key_id}
        rotate_key_file(settings.master_key_path)
        ring = load_keyring(None, settings.master_key_path)

        async def rotate() -> int:
            db = Database(db_url)
            try:
                return await reseal_all(db, ring)
            finally:
                await db.dispose()

        assert asyncio.run(rotate()) >= 2
        new_ids = {c.key_id for (c,) in asyncio.run(stored()) if c.key_id}
        assert new_ids == {ring.current.hex()} and not (old_ids & new_ids)
        assert api.ok(api.post("/channels/hook/test")) == {
            "delivered": True,
            "detail": "delivered",
        }
        assert receiver.bodies[-1]["event"] == "test"
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("email", {"host": "smtp", "port": "25x", "to": ["a@example.org"]}, "config.port"),
        ("email", {"host": "smtp", "port": "25", "to": ["a@example.org"]}, "config.port"),
        ("email", {"host": "smtp", "port": 70000, "to": ["a@example.org"]}, "config.port"),
        ("email", {"host": "smtp", "to": ["not an address"]}, "config.to.0"),
        ("email", {"host": "smtp", "to": []}, "config.to"),
        ("email", {"host": "smtp", "to": ["a@example.org"], "from": "nobody"}, "config.from"),
        ("email", {"to": ["a@example.org"]}, "config.host"),
        ("webhook", {"url": "/relative/path"}, "config.url"),
        ("webhook", {"url": "ftp://files.example.com/x"}, "config.url"),
        ("webhook", {"url": "https://h.example", "surprise": 1}, "config.surprise"),
        ("slack", {"url": "hooks.slack.com/services/x"}, "config.url"),
    ],
)
def test_settings_are_validated_when_written(
    api: Api, kind: str, config: dict[str, Any], field: str
) -> None:
    response = api.post("/channels", {"name": "c", "kind": kind, "config": config})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == field


def test_one_bad_channel_never_silences_the_others(api: Api, db_url: str) -> None:
    good = Receiver(503, 204)  # fails once, then accepts: the retry delivers
    broken = Receiver(500)
    try:
        api.ok(api.post("/channels", webhook(good.url)), 201)
        api.ok(api.post("/channels", {**webhook(broken.url), "name": "broken"}), 201)
        api.ok(
            api.post(
                "/channels",
                {"name": "nowhere", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/"}},
            ),
            201,
        )

        async def send() -> int:
            db = Database(db_url)
            try:
                # a channel stored before validation existed, with a port that is no number
                async with db.session() as session:
                    owner = await session.scalar(sa.select(NotificationChannel.owner_id).limit(1))
                    session.add(
                        NotificationChannel(
                            owner_id=owner,
                            name="legacy",
                            kind="email",
                            config={"host": "127.0.0.1", "port": "abc", "to": ["a@b.c"]},
                        )
                    )
                keyring = load_keyring(None, api_settings_key(db_url, api))
                sent = await alerts.notify(db, {"event": "test", "text": "hello"}, keyring=keyring)
                assert len(broken.bodies) == 1  # the caller is not held up by the retries
                await alerts.settle()  # they run in the background
                return sent
            finally:
                await db.dispose()

        assert asyncio.run(send()) == 0  # nobody accepted the first try
        assert [b["event"] for b in good.bodies] == ["test", "test"]  # the 2nd try did
        assert len(broken.bodies) == 3  # three tries
        listed = {c["name"]: c for c in api.ok(api.get("/channels"))}
        assert listed["hook"]["last_success_at"] and listed["hook"]["last_error"] is None
        assert listed["broken"]["last_error"] == "receiver answered HTTP 500"
        assert listed["broken"]["consecutive_failures"] == 1
        assert listed["nowhere"]["last_error"].startswith("webhook delivery failed")
        assert listed["legacy"]["last_error"].startswith("email delivery failed")
    finally:
        good.close()
        broken.close()


def api_settings_key(db_url: str, api: Api) -> Any:
    settings: Settings = api.client.app.state.settings  # type: ignore[attr-defined]
    return settings.master_key_path


def test_cli_shows_masked_settings_and_last_failure(
    settings: Settings, admin_token: str, db_url: str
) -> None:
    from tests.conftest import LiveServer
    from tests.variables.test_cli_and_rotation import run_cli

    broken = Receiver(500)
    try:
        with LiveServer(settings) as server:

            def cli(*args: str) -> Any:
                return run_cli(server, admin_token, *args)

            added = cli(
                "channel", "add", "hook", "--kind", "webhook",
                "--url", broken.url + f"?token={URL_TOKEN}", "--secret", HMAC_KEY,
            )  # fmt: skip
            assert added.returncode == 0, added.stderr
            bad = cli(
                "channel", "add", "mail", "--kind", "email",
                "--config", '{"host": "smtp", "port": "x25", "to": ["a@example.org"]}',
            )  # fmt: skip
            assert bad.returncode != 0 and "config.port" in bad.stderr
            assert "Traceback" not in bad.stderr
            tested = cli("channel", "test", "hook")
            assert tested.returncode == 1
            assert tested.stderr.strip() == "error: channel hook: receiver answered HTTP 500"
            listed = cli("channel", "list")
            assert "receiver answered HTTP 500" in listed.stdout
            as_json = cli("channel", "list", "--json")
            for out in (added.stdout, listed.stdout, as_json.stdout, tested.stderr):
                assert HMAC_KEY not in out and URL_TOKEN not in out
            assert json.loads(as_json.stdout)[0]["consecutive_failures"] == 1
    finally:
        broken.close()
