"""Issue 13.12: `incidents`, `health` and `uptime` as a user reads them (the CLI as a subprocess
against a live server; the monitor's rows are written straight into the store)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pilothouse.core.clock import utcnow
from pilothouse.healthchecks.models import HealthCheck, Incident
from pilothouse.replicas.models import Replica
from tests.conftest import LiveServer, one_store
from tests.test_cli import Cli


def _store(db_url: str) -> sa.Engine:
    return sa.create_engine(
        sa.engine.make_url(db_url).set(
            drivername="postgresql+psycopg" if db_url.startswith("postgresql") else "sqlite"
        )
    )


@one_store
def test_incidents_health_and_uptime_read_well(
    live_server: LiveServer, admin_token: str, tmp_path: Path, db_url: str
) -> None:
    cli = Cli(live_server.url, admin_token, tmp_path)
    cli.run("env", "create", "prod")
    svc = cli.json("service", "create", "web", "--env", "prod", "--command", "run {port}")
    service_id = uuid.UUID(svc["id"])
    live, gone = uuid.uuid4(), uuid.uuid4()
    now = utcnow()
    engine = _store(db_url)
    with Session(engine) as session, session.begin():
        session.add(Replica(id=live, service_id=service_id, status="running", ports={"http": 4101}))
        session.add(Replica(id=gone, service_id=service_id, status="stopped", ports={"http": 4102}))
        for rid, ok, code in ((live, False, 503), (gone, True, 200)):
            session.add(
                HealthCheck(
                    service_id=service_id,
                    replica_id=rid,
                    target=f"replica:{rid}",
                    kind="http",
                    timestamp=now - timedelta(seconds=5),
                    ok=ok,
                    overall_status="healthy" if ok else "unhealthy",
                    http_status=code,
                    detail="HTTP 503" if not ok else "HTTP 200",
                )
            )
        session.add(
            Incident(
                service_id=service_id,
                status="unhealthy",
                cause="HTTP 503",
                started_at=now - timedelta(minutes=2),
            )
        )
    engine.dispose()

    incidents = cli.run("incidents").stdout
    assert "web" in incidents and "HTTP 503" in incidents, incidents
    assert cli.json("incidents")[0]["service"] == "web"

    health = cli.run("health", "web").stdout
    assert str(live)[:8] in health and str(gone)[:8] not in health, health
    everything = cli.run("health", "web", "--all").stdout
    assert str(live)[:8] in everything and str(gone)[:8] in everything, everything
    assert "stopped" in everything
    view = cli.json("health", "web")
    assert [r["id"] for r in view["replicas"]] == [str(live)]
    assert {c["target"] for c in view["checks"]} == {f"replica:{live}"}

    empty = cli.run("uptime", "web", "--month", "2026-01").stdout
    assert "no data" in empty and "100.000%" not in empty and "SLA met" not in empty, empty
    assert cli.json("uptime", "web", "--month", "2026-01")["checks"] == 0
