"""Deployment notifications (issue 13.7): started, succeeded, failed and rolled back (automatic
and manual) reach the channels that opted in to that event and environment, and only those;
a real SMTP server (aiosmtpd) and webhook receivers take them from a real pilothouse process.
Opt-ins are validated (422 naming the field), the messages name service, environment, version,
who and why, and never a secret."""

from __future__ import annotations

import asyncio
import email
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from pilothouse.access import Principal
from pilothouse.alerts import deployments as notices
from pilothouse.artifacts import service as artifacts
from pilothouse.config import Settings
from pilothouse.core.db import Database
from pilothouse.deployments import service as deployments
from pilothouse.environments import service as environments
from pilothouse.services import lifecycle
from pilothouse.services import service as services
from pilothouse.services.models import Service
from pilothouse.setup import ensure_master_key
from tests.alerts.test_channels import Receiver
from tests.conftest import Api, LiveServer, free_port, one_store
from tests.engine_support import Client
from tests.variables.test_cli_and_rotation import run_cli

SECRET = "sntl-deploy-secret-7Hq2"


@pytest.fixture(autouse=True)
def _key(settings: Settings) -> None:
    ensure_master_key(settings.master_key_path)


PROD, STAGE = uuid.uuid4(), uuid.uuid4()


@pytest.mark.parametrize(
    ("events", "envs", "own", "event", "env", "env_id", "wanted"),
    [
        ([], [], None, "failed", "prod", PROD, False),  # opt-in: nothing by default
        (["failed"], [], None, "failed", "prod", PROD, True),  # every environment
        (["failed"], [], None, "started", "prod", PROD, False),
        (["failed"], ["stage"], None, "failed", "prod", PROD, False),
        (["failed"], ["stage", "prod"], None, "failed", "prod", PROD, True),
        (["failed"], [], STAGE, "failed", "prod", PROD, False),  # a stage channel: stage only
        (["failed"], [], PROD, "failed", "prod", PROD, True),
        (["rolled_back"], ["prod"], None, "rolled_back", "prod", PROD, True),
    ],
)
def test_opt_in_rule(
    events: list[str],
    envs: list[str],
    own: uuid.UUID | None,
    event: str,
    env: str,
    env_id: uuid.UUID,
    wanted: bool,
) -> None:
    assert (
        notices.wants(events, envs, own, event=event, environment=env, environment_id=env_id)
        is wanted
    )


def facts(event: str, **over: Any) -> notices.Facts:
    base: dict[str, Any] = {
        "event": event,
        "deployment_id": uuid.uuid4(),
        "service": "web",
        "environment": "prod",
        "environment_id": PROD,
        "version": "v2",
        "previous_version": None,
        "kind": "deploy",
        "operator": "alice",
        "automatic": False,
        "reason": None,
    }
    return notices.Facts(**{**base, **over})


@pytest.mark.parametrize(
    ("given", "text"),
    [
        (facts("started"), "web (prod): deploy of v2 started by alice"),
        (facts("succeeded"), "web (prod): v2 is live (deploy by alice)"),
        (
            facts("failed", reason="deploy command exited with status 1"),
            "web (prod): deploy of v2 by alice failed: deploy command exited with status 1",
        ),
        (
            facts(
                "started", kind="rollback", version="v1", automatic=True, operator="system:engine"
            ),
            "web (prod): rollback to v1 started automatically",
        ),
        (
            facts(
                "rolled_back",
                kind="rollback",
                version="v1",
                previous_version="v2",
                automatic=True,
                reason="v2 failed: deploy command exited with status 1",
            ),
            "web (prod): rolled back from v2 to v1 automatically: v2 failed: deploy command "
            "exited with status 1",
        ),
        (
            facts("rolled_back", kind="rollback", version="v1", reason="manual rollback"),
            "web (prod): rolled back to v1 by alice: manual rollback",
        ),
    ],
)
def test_message_names_service_environment_version_who_and_why(
    given: notices.Facts, text: str
) -> None:
    shown = notices.message(given)
    assert shown["text"] == text
    assert shown["event"] == f"deployment_{given.event}"
    assert {shown["service"], shown["environment"], shown["version"]} == {
        given.service,
        given.environment,
        given.version,
    }


@pytest.mark.parametrize(
    ("given", "text"),
    [
        (facts("started", kind="stop", version="v1"), "web (prod) stopping by alice"),
        (
            facts("succeeded", kind="stop", version="v1", reason="maintenance"),
            "web (prod) stopped by alice (maintenance)",
        ),
        (
            facts("failed", kind="stop", version="v1", reason="stop command exited with status 1"),
            "web (prod) stop by alice failed: stop command exited with status 1",
        ),
        (
            facts("started", kind="start", version="v1", reason="after maintenance"),
            "web (prod) starting again at v1 by alice (after maintenance)",
        ),
        (facts("succeeded", kind="start", version="v1"), "web (prod) started again at v1 by alice"),
        (
            facts("failed", kind="start", version="v1", reason="no replica became ready"),
            "web (prod) start at v1 by alice failed: no replica became ready",
        ),
    ],
)
def test_stop_and_start_say_what_happened(given: notices.Facts, text: str) -> None:
    """A stop is not a release going live: its notices say stopped / started again."""
    shown = notices.message(given)
    assert shown["text"] == text
    assert shown["kind"] == given.kind and shown["event"] == f"deployment_{given.event}"


async def test_a_stop_notice_carries_the_operators_reason(db: Database, admin: Principal) -> None:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="prod", type="production")
        await services.create_service(
            session, admin, environment="prod", name="web", resources={}, command="run {port}"
        )
        await artifacts.register_artifact(
            session, admin, service="web", environment="prod", version="v1", commit_sha="d" * 40
        )
        deploy = await deployments.create_deployment(session, admin, service="web", version="v1")
        for to in ("building", "deploying", "success"):
            await deployments.transition(session, deploy, to, actor=admin)
        svc = await session.get(Service, deploy.service_id)
        assert svc is not None
        await services.transition(session, svc, "scheduled", actor=admin)
        await services.transition(session, svc, "running", actor=admin)
        _, stop = await lifecycle.stop_service(session, admin, "web", reason="maintenance")
    said = await notices.facts_of(db, stop.id, "succeeded")
    assert said is not None and said.kind == "stop" and said.reason == "maintenance"
    text = notices.message(said)["text"]
    assert text == f"web (prod) stopped by {admin.name} (maintenance)"


def test_opt_ins_are_validated_and_shown(api: Api, world: dict[str, Any]) -> None:
    hook = {"name": "hook", "kind": "webhook", "config": {"url": "https://h.example/x"}}
    bad = api.post("/channels", {**hook, "deploy_events": ["started", "exploded"]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "deploy_events.1"
    bad = api.post("/channels", {**hook, "deploy_environments": ["prod", "nowhere"]})
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"][0]["field"] == "deploy_environments.1"
    assert "nowhere" in bad.json()["detail"][0]["rule"]
    created = api.ok(
        api.post(
            "/channels",
            {**hook, "deploy_events": ["failed", "started", "failed"], "deploy_environments": []},
        ),
        201,
    )
    assert created["deploy_events"] == ["started", "failed"]  # once each, in their order
    assert created["deploy_environments"] == []
    bad = api.patch("/channels/hook", {"deploy_events": ["rolled-back"]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "deploy_events.0"
    bad = api.patch("/channels/hook", {"deploy_events": None})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "deploy_events"
    changed = api.ok(
        api.patch(
            "/channels/hook", {"deploy_events": ["rolled_back"], "deploy_environments": ["prod"]}
        )
    )
    assert changed["deploy_events"] == ["rolled_back"]
    assert changed["deploy_environments"] == ["prod"]
    assert api.ok(api.get("/channels/hook"))["deploy_environments"] == ["prod"]


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                outer.messages.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.stop()


def _until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)


@one_store
def test_deployment_events_reach_opted_in_channels_only(
    stack: dict[str, Any], mailbox: Mailbox
) -> None:
    client: Client = stack["client"]
    everything, failures, elsewhere, silent = (
        Receiver(204),
        Receiver(204),
        Receiver(204),
        Receiver(204),
    )
    try:
        script = (
            'echo "deploying $PILOTHOUSE_VERSION with $APP_TOKEN"; '
            'test "$PILOTHOUSE_VERSION" != v2.0.0'
        )
        client.setup_service(
            "shop",
            replicas=1,
            driver="command",
            command=None,
            env_name="prod",
            versions=("v1.0.0", "v2.0.0", "v3.0.0"),
            driver_config={"deploy_command": script, "timeout": 20},
        )
        client.ok("POST", "/environments", 201, json={"name": "stage", "driver": "command"})
        client.ok(
            "PUT", "/environments/prod/vars/APP_TOKEN", json={"value": SECRET, "is_secret": True}
        )

        def channel(name: str, url: str, events: list[str], envs: list[str]) -> None:
            body = {
                "name": name,
                "kind": "webhook",
                "config": {"url": url},
                "deploy_events": events,
                "deploy_environments": envs,
            }
            client.ok("POST", "/channels", 201, json=body)

        all_events = ["started", "succeeded", "failed", "rolled_back"]
        channel("everything", everything.url, all_events, ["prod"])
        channel("failures", failures.url, ["failed", "rolled_back"], [])
        channel("stage-only", elsewhere.url, all_events, ["stage"])
        channel("health-only", silent.url, [], [])  # other alerts only: no deployment events
        client.ok(
            "POST",
            "/channels",
            201,
            json={
                "name": "mail",
                "kind": "email",
                "config": {"host": "127.0.0.1", "port": mailbox.port, "to": ["ops@example.org"]},
                "deploy_events": ["rolled_back"],
                "deploy_environments": ["prod"],
            },
        )

        first = client.wait(client.deploy("shop", "v1.0.0")["id"])
        assert first["status"] == "success"
        second = client.wait(client.deploy("shop", "v2.0.0")["id"], {"rolled_back"})
        assert second["error_message"] == "deploy command exited with status 1"
        third = client.wait(client.deploy("shop", "v3.0.0")["id"])
        assert third["status"] == "success"
        manual = client.ok("POST", "/services/shop/rollback", 201, json={})
        client.wait(manual["id"])

        expected = [
            ("started", "v1.0.0"),
            ("succeeded", "v1.0.0"),
            ("started", "v2.0.0"),
            ("failed", "v2.0.0"),
            ("started", "v1.0.0"),  # the automatic rollback
            ("rolled_back", "v1.0.0"),
            ("started", "v3.0.0"),
            ("succeeded", "v3.0.0"),
            ("started", "v1.0.0"),  # the manual rollback
            ("rolled_back", "v1.0.0"),
        ]
        _until(lambda: len(everything.bodies) >= len(expected), "every event")
        _until(lambda: len(failures.bodies) >= 3 and len(mailbox.messages) >= 2, "the others")
        got = [(b["deployment_event"], b["version"]) for b in everything.bodies]
        assert sorted(got) == sorted(expected)  # each once (delivery order may vary)
        assert len(everything.bodies) == len(expected)
        assert sorted(b["deployment_event"] for b in failures.bodies) == [
            "failed",
            "rolled_back",
            "rolled_back",
        ]
        by_event = {(b["deployment_event"], b["automatic"]): b for b in everything.bodies}
        failed = by_event[("failed", False)]
        assert failed["service"] == "shop" and failed["environment"] == "prod"
        assert failed["operator"] == "admin"
        assert failed["reason"] == "deploy command exited with status 1"
        automatic = by_event[("rolled_back", True)]
        assert automatic["previous_version"] == "v2.0.0"
        assert automatic["text"].startswith(
            "shop (prod): rolled back from v2.0.0 to v1.0.0 automat"
        )
        manual_notice = by_event[("rolled_back", False)]
        assert manual_notice["previous_version"] == "v3.0.0"
        assert "by admin: manual rollback" in manual_notice["text"]

        subjects = sorted(str(m["Subject"]) for m in mailbox.messages)
        assert len(subjects) == 2 and all("rolled back" in s for s in subjects)
        # the stage-only and the health-only channels heard nothing
        assert elsewhere.bodies == [] and silent.bodies == []
        everything_said = repr(everything.bodies + failures.bodies) + "".join(
            m.as_string() for m in mailbox.messages
        )
        assert SECRET not in everything_said
        channels = {c["name"]: c for c in client.ok("GET", "/channels")}
        assert channels["everything"]["last_success_at"] is not None
        assert channels["mail"]["last_error"] is None
    finally:
        for receiver in (everything, failures, elsewhere, silent):
            receiver.close()


def test_cli_opt_in_flags(settings: Settings, admin_token: str, api: Api) -> None:
    api.ok(api.post("/environments", {"name": "prod", "type": "production"}), 201)
    with LiveServer(settings) as server:

        def cli(*args: str) -> Any:
            return run_cli(server, admin_token, *args)

        bad = cli(
            "channel", "add", "hook", "--kind", "webhook", "--url", "https://h.example/x",
            "--deploy-events", "started,exploded",
        )  # fmt: skip
        assert bad.returncode != 0 and "deploy_events.1" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
        added = cli(
            "channel", "add", "hook", "--kind", "webhook", "--url", "https://h.example/x",
            "--deploy-events", "failed, rolled_back", "--deploy-envs", "prod",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert cli("channel", "update", "hook", "--deploy-envs", "").returncode == 0
        listed = cli("channel", "list")
        assert "failed,rolled_back" in listed.stdout and "all" in listed.stdout
    shown = api.ok(api.get("/channels/hook"))
    assert shown["deploy_events"] == ["failed", "rolled_back"]
    assert shown["deploy_environments"] == []


def test_sending_never_raises_for_a_missing_deployment(db_url: str) -> None:
    from pilothouse.core.db import Database
    from pilothouse.core.leases import Leases

    async def go() -> int:
        db = Database(db_url)
        try:
            return await notices.send(db, Leases(db), uuid.uuid4(), "started")
        finally:
            await db.dispose()

    assert asyncio.run(go()) == 0


def test_a_failing_hook_never_reaches_the_deployment(db_url: str, tmp_path: Any) -> None:
    """The engine's hook call is guarded, and the alerts hook only queues (returns at once)."""
    from pilothouse.core.db import Database
    from pilothouse.core.leases import Leases
    from pilothouse.deployments.engine import Engine

    queued: list[Any] = []

    def spawn(key: Any, work: Any) -> bool:
        queued.append(key)
        work.close()  # not run: what matters is that emit did not wait for it
        return True

    def boom(deployment_id: uuid.UUID, event: str) -> None:
        raise RuntimeError("a broken hook")

    async def go() -> None:
        db = Database(db_url)
        try:
            engine = Engine(db, tmp_path)
            engine.event_hooks.extend([boom, notices.hook(db, Leases(db), spawn)])
            dep = uuid.uuid4()
            engine._emit(dep, "started")  # boom is logged, the next hook still runs
            engine._emit(dep, None)  # a transition that notifies nobody
            assert queued == [("deployment_notice", dep, "started")]
        finally:
            await db.dispose()

    asyncio.run(go())
