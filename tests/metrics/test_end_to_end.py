"""End to end (issue 14): the sample app's /metrics is scraped from its replica,
`pilothouse metrics query` shows its request rate and P95, a burst of errors opens an incident of
the default error-rate rule (its name in the message and in `pilothouse incidents`) and recovery
closes it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from pilothouse.access import Principal
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.metrics import alerting, scrape
from pilothouse.metrics.models import MetricIncident
from pilothouse.replicas.models import Replica
from pilothouse.services import service as services
from pilothouse.users.models import User
from tests.conftest import LiveServer, one_store
from tests.metrics.support import sampleapp
from tests.test_cli import Cli


@one_store
async def test_scraped_errors_open_and_close_an_incident(
    db: Database, live_server: LiveServer, admin_token: str, tmp_path: Path
) -> None:
    cli = Cli(live_server.url, admin_token, tmp_path)
    async with db.session(write=False) as session:
        user = await session.scalar(sa.select(User).where(User.role == "admin"))
    assert user is not None
    admin = Principal(id=user.id, name=user.name, role="admin")
    with sampleapp() as port:
        base = f"http://127.0.0.1:{port}"
        async with db.session() as session:
            await environments.create_environment(session, admin, name="prod")
            svc = await services.create_service(
                session, admin, environment="prod", name="web", resources={}, public_url=base
            )
            svc.status = "running"
            session.add(Replica(service_id=svc.id, status="running", ports={"http": port}))
        assert await alerting.ensure_default_rules(db) == 3
        targets = await scrape.discover(db)
        messages: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        async def round_of(requests: int, error_rate: float) -> None:
            """Traffic, a scrape, an evaluation of the rules."""
            with httpx.Client() as client:
                client.get(f"{base}/errors?rate={error_rate}")
                for _ in range(requests):
                    client.get(base + "/")
            [outcome] = await scrape.scrape(db, targets)
            assert outcome.up, outcome.detail
            await asyncio.sleep(0.01)  # the next evaluation sees this scrape's samples
            await alerting.evaluate(db, utcnow(), send, reminder_every=timedelta(hours=1))

        await round_of(0, 0.0)  # the counters' first point
        await round_of(100, 0.0)
        await round_of(100, 0.0)
        assert messages == []

        # The CLI shows the request rate and the P95 of the durations.
        rate = cli.json(
            "metrics", "query", "http_requests_total", "--tag", "service=web", "--stat", "rate"
        )
        assert (rate["groups"][0]["figures"]["rate"] or 0) > 0, rate
        shown = cli.run(
            "metrics", "query", "http_request_duration_ms", "--tag", "service=web", "--window", "5m"
        ).stdout
        assert "p95=" in shown and "p95=-" not in shown and "(1 series, 5m)" in shown, shown

        # A burst of errors: the default error-rate rule fires (2 of 3 evaluations).
        await round_of(20, 0.5)
        await round_of(0, 0.0)
        opened = [m for m in messages if m["event"] == "incident"]
        assert [m["rule"] for m in opened] == ["error-rate"], messages
        assert "error-rate" in opened[0]["text"] and opened[0]["service"] == "web"
        async with db.session(write=False) as session:
            incident = await session.scalar(sa.select(MetricIncident))
        assert incident is not None and incident.ended_at is None
        listed = cli.json("incidents", "--open")
        assert [(i["kind"], i["rule"], i["service"]) for i in listed] == [
            ("metric", "error-rate", "web")
        ]
        # A default rule is paused, not deleted (it would come back).
        refused = cli.run("metrics", "rules", "rm", "error-rate", ok=False)
        assert "default" in refused.stderr

        # Clean traffic dilutes the window's error ratio below 1%: recovery closes it.
        for _ in range(200):
            await round_of(400, 0.0)
            if any(m["event"] == "recovery" for m in messages):
                break
        recovered = [m for m in messages if m["event"] == "recovery"]
        assert [m["rule"] for m in recovered] == ["error-rate"], messages
        async with db.session(write=False) as session:
            incident = await session.scalar(sa.select(MetricIncident))
        assert incident is not None and incident.ended_at is not None
