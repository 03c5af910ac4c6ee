"""Pull: the scrape schedule (table), parsing with prometheus_client, and real scrapes of the
sample app whose request/error counters fill the seed 000 health columns and change the
derived status (error-rate rules of healthchecks/derive.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pilothouse.access import Principal
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.core.loops import Runtime
from pilothouse.environments import service as environments
from pilothouse.healthchecks.models import HealthCheck, HealthState
from pilothouse.healthchecks.monitor import Monitor
from pilothouse.metrics import builtin, scrape
from pilothouse.metrics.figures import ReplicaFigures
from pilothouse.metrics.models import MetricSeries, metric_samples
from pilothouse.metrics.samples import write_samples
from pilothouse.replicas.models import Replica
from pilothouse.services import service as services
from pilothouse.services.models import Service
from tests.metrics.support import sampleapp

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("interval", "slot", "expected_runs_per_minute"),
    [(15.0, 5.0, 4), (5.0, 5.0, 12), (2.0, 5.0, 12), (60.0, 5.0, 1), (30.0, 10.0, 2)],
)
def test_due_once_per_interval(interval: float, slot: float, expected_runs_per_minute: int) -> None:
    """Over any minute, a target is due once per interval (every slot when shorter)."""
    for key in ("a", "b", "replica-3"):
        runs = sum(
            scrape.due(key, interval, 1_000_000 + i * slot, slot) for i in range(int(60 / slot))
        )
        assert runs == expected_runs_per_minute


def test_parse_keeps_app_labels_and_tags_win() -> None:
    text = (
        "# HELP jobs_seconds Time spent.\n# TYPE jobs_seconds summary\n"
        "# UNIT jobs_seconds seconds\n"
        'jobs_seconds_count{service="app-says"} 3\njobs_seconds_sum{service="app-says"} 1.5\n'
        "# TYPE temp gauge\ntemp NaN\n"
        "# TYPE old gauge\nold 7 1700000000000\n"
    )
    samples, counters = scrape.parse(text, {"service": "web", "replica": "r1"}, AT)
    found = {(s.name, tuple(sorted(s.tags.items()))): s for s in samples}
    tags = (("exported_service", "app-says"), ("replica", "r1"), ("service", "web"))
    assert found[("jobs_seconds_count", tags)].value == 3
    assert found[("jobs_seconds_sum", tags)].value == 1.5
    assert all(s.name != "temp" for s in samples)  # NaN is not stored
    old = next(s for s in samples if s.name == "old")
    assert old.at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert all(s.source == "application" for s in samples)
    assert counters == builtin.Counters()


EXPOSITIONS = [
    # (first exposition, next one): the next one must read exactly as the parser reads it.
    (
        '# TYPE http_requests_total counter\nhttp_requests_total{code="200",path="/a b"} 5\n'
        'http_requests_total{code="500",path="/"} 1\n# TYPE up gauge\nup 1\n',
        '# TYPE http_requests_total counter\nhttp_requests_total{code="200",path="/a b"} 9\n'
        'http_requests_total{code="500",path="/"} 3\n# TYPE up gauge\nup NaN\n',
    ),
    # A counter named without _total (the parser adds it), a timestamp, a tab.
    (
        "# TYPE hits counter\nhits 1\nold\t7 1700000000000\n",
        "# TYPE hits counter\nhits 2\nold\t8 1700000060000\n",
    ),
    # Lines that differ (a new label set, a changed TYPE): parsed again.
    ('x{a="1"} 1\n', 'x{a="1"} 2\nx{a="2"} 3\n'),
    ("# TYPE c counter\nc_total 1\n", "# TYPE c gauge\nc_total 2\n"),
    # The name given as __name__, a value with _ (float() would take it, the parser refuses).
    ('{__name__="n",service="s"} 1\n', '{__name__="n",service="s"} 4\n'),
    ("v 1\n", "v 1_000\n"),
]


@pytest.mark.parametrize(("first", "then"), EXPOSITIONS)
def test_parse_reusing_the_last_shape_reads_as_the_parser(first: str, then: str) -> None:
    tags = {"service": "web", "replica": "r1"}
    scrape.parse(first, tags, AT, key="t")
    try:
        expected = scrape.parse(then, tags, AT)
    except ValueError:
        with pytest.raises(ValueError):
            scrape.parse(then, tags, AT, key="t")
        return
    assert scrape.parse(then, tags, AT, key="t") == expected
    assert scrape.parse(then, tags, AT, key="t") == expected  # and from its own shape


async def _replica(db: Database, admin: Principal, port: int, **health: object) -> uuid.UUID:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e")
        svc = await services.create_service(
            session,
            admin,
            environment="e",
            name="web",
            resources={},
            health_check={"replica_interval": 1, **health},
        )
        svc.status = "running"
        replica = Replica(service_id=svc.id, status="running", ports={"http": port})
        session.add(replica)
        await session.flush()
        return replica.id


async def test_scrape_discovers_replicas_and_keeps_their_figures(
    db: Database, admin: Principal
) -> None:
    with sampleapp() as port:
        replica_id = await _replica(db, admin, port, metrics={"interval": 5})
        with httpx.Client() as client:
            for _ in range(5):
                client.get(f"http://127.0.0.1:{port}/")
        targets = await scrape.discover(db)
        assert [(t.replica_id, t.url, t.interval) for t in targets] == [
            (replica_id, f"http://127.0.0.1:{port}/metrics", 5.0)
        ]
        [outcome] = await scrape.scrape(db, targets)
        assert outcome.up, outcome.detail
        requests = [s for s in outcome.samples if s.name == "http_requests_total"]
        assert any(
            s.tags["path"] == "/" and s.tags["code"] == "200" and s.value == 5 for s in requests
        )
        assert all(s.tags["service"] == "web" and s.tags["environment"] == "e" for s in requests)
        assert all(s.tags["replica"] == str(replica_id) for s in requests)
        assert outcome.counters.requests is not None and outcome.counters.requests >= 5
        async with db.session(write=False) as session:
            row = await session.get(ReplicaFigures, replica_id)
            stored = {
                (series.name, series.tags.get("path"), series.tags.get("code")): series
                for series in await session.scalars(
                    sa.select(MetricSeries).where(
                        MetricSeries.name.in_(("http_requests_total", "up"))
                    )
                )
            }
            values = await session.scalar(sa.select(sa.func.count()).select_from(metric_samples))
            up = list(
                await session.scalars(
                    sa.select(metric_samples.c.value).where(
                        metric_samples.c.series_id == stored[("up", None, None)].id
                    )
                )
            )
        assert row is not None and row.up and row.total_requests == outcome.counters.requests
        assert row.uptime_seconds is not None and row.active_connections == 1
        # The samples are in the embedded store, their series tagged with the replica.
        series = stored[("http_requests_total", "/", "200")]
        assert series.tags["replica"] == str(replica_id) and series.source == "application"
        assert up == [1.0]
        assert values == len(outcome.samples) + 3  # + up, scrape duration, samples scraped


async def test_builtin_samples_of_replicas_and_probes(db: Database, admin: Principal) -> None:
    with sampleapp() as port:
        replica_id = await _replica(db, admin, port)
        async with db.session() as session:
            await session.execute(
                sa.update(Replica)
                .where(Replica.id == replica_id)
                .values(cpu_percent=12.5, memory_mb=64.0)
            )
        monitor = Monitor(db, figures=[builtin.figures_of])
        await _probe_replica(monitor, replica_id)
        now = utcnow()
        samples = await builtin.builtin_samples(db, now - timedelta(minutes=1), now)
        await write_samples(db, samples)
    found = {(s.name, s.tags.get("replica") or s.tags.get("target")): s for s in samples}
    cpu = found[("pilothouse_replica_cpu_percent", str(replica_id))]
    assert cpu.value == 12.5 and cpu.source == "infrastructure"
    assert cpu.tags["service"] == "web" and cpu.tags["environment"] == "e"
    assert found[("pilothouse_replica_memory_bytes", str(replica_id))].value == 64 * 1024 * 1024
    probe = found[("pilothouse_probe_success", f"replica:{replica_id}")]
    assert probe.value == 1.0 and probe.tags["kind"] == "http"
    assert found[("pilothouse_probe_duration_seconds", f"replica:{replica_id}")].value > 0
    # The probe's health row has the driver's CPU and memory (and the memory share).
    async with db.session(write=False) as session:
        check = await session.scalar(sa.select(HealthCheck).where(HealthCheck.kind == "http"))
    assert check is not None and check.cpu_usage_percent == 12.5
    assert check.memory_usage_mb == 64.0 and check.memory_usage_percent == 12.5  # of 512 MB


async def test_scrape_path_off_and_failures(db: Database, admin: Principal) -> None:
    with sampleapp() as port:
        replica_id = await _replica(db, admin, port, metrics={"path": "/nothing-here"})
        [outcome] = await scrape.scrape(db, await scrape.discover(db))
        assert not outcome.up and outcome.detail == "HTTP 404"
        up = [s for s in scrape.target_series(outcome) if s.name == "up"]
        assert up[0].value == 0.0
        async with db.session(write=False) as session:
            row = await session.get(ReplicaFigures, replica_id)
            assert row is not None and not row.up and row.detail == "HTTP 404"
            svc_id = await session.scalar(sa.select(Replica.service_id))
        async with db.session() as session:
            await session.execute(
                sa.update(Service)
                .where(Service.id == svc_id)
                .values(health_check={"metrics": {"enabled": False}})
            )
        assert await scrape.discover(db) == []


async def _probe_replica(monitor: Monitor, replica_id: uuid.UUID) -> None:
    monitor.targets = await monitor.collect_targets()
    target = next(t for t in monitor.targets if t.replica_id == replica_id)
    monitor.record(target, await monitor.probe(target))
    await monitor.flush()


async def _state(db: Database, key: str) -> HealthState:
    async with db.session(write=False) as session:
        state = await session.get(HealthState, key)
    assert state is not None
    return state


async def test_error_rate_from_metrics_changes_the_derived_status(
    db: Database, admin: Principal
) -> None:
    """Seed 000: error rate >= 1% is degraded, > 5% unhealthy (after the damping streak)."""
    with sampleapp() as port:
        base = f"http://127.0.0.1:{port}"
        replica_id = await _replica(db, admin, port)
        monitor = Monitor(db, figures=[builtin.figures_of])
        async with db.session(write=False) as session:
            service_id = await session.scalar(sa.select(Replica.service_id))
        targets = await scrape.discover(db)

        async def traffic(rate: float, n: int = 100) -> None:
            with httpx.Client() as client:
                client.get(f"{base}/errors?rate={rate}")
                for _ in range(n):
                    client.get(base + "/")
            await scrape.scrape(db, targets)

        await traffic(0.0)
        await traffic(0.0)  # two scrapes: a window exists, no errors
        await _probe_replica(monitor, replica_id)
        replica_key, service_key = f"replica:{replica_id}", f"service:{service_id}"
        assert (await _state(db, replica_key)).status == "healthy"

        await traffic(0.05)  # ~2.5% of the window's requests fail: degraded at once
        await _probe_replica(monitor, replica_id)
        state = await _state(db, replica_key)
        assert state.status == "degraded"
        assert any(r.startswith("error rate") for r in state.reasons or [])
        assert (await _state(db, service_key)).status == "degraded"

        await traffic(1.0, 400)  # most requests fail: unhealthy after three results in a row
        for _ in range(3):
            await _probe_replica(monitor, replica_id)
        state = await _state(db, replica_key)
        assert state.status == "unhealthy", state.reasons
        assert any(r.startswith("error rate") for r in state.reasons or [])
        assert (await _state(db, service_key)).status == "unhealthy"

        async with db.session(write=False) as session:
            rows = {
                c.kind: c
                for c in await session.scalars(
                    sa.select(HealthCheck).order_by(HealthCheck.timestamp.desc()).limit(2)
                )
            }
        replica_row, service_row = rows["http"], rows["service"]
        for row in (replica_row, service_row):
            assert row.error_rate_5min is not None and row.error_rate_5min > 0.05
            assert row.total_requests is not None and row.total_requests >= 600
            assert row.uptime_seconds is not None
        assert replica_row.active_connections is not None


async def test_loops_register_the_figures_hook_and_stale_figures_go(
    db: Database, tmp_path: Path
) -> None:
    rt = Runtime(db, Settings(data_dir=tmp_path), Leases(db))
    assert [loop.name for loop in scrape.loops(rt)] == ["metrics.scrape", "metrics.builtin"]
    assert rt.hooks("replica_figures") == [builtin.figures_of]
    off = Runtime(db, Settings(data_dir=tmp_path, metrics_scrape_enabled=False), Leases(db))
    assert scrape.loops(off) == [] and off.hooks("replica_figures") == []
    now = utcnow()
    async with db.session() as session:
        for age in (timedelta(hours=1), timedelta(days=2)):
            row = ReplicaFigures(replica_id=uuid.uuid4(), service_id=uuid.uuid4())
            row.points, row.scraped_at = [], now - age
            session.add(row)
    assert await builtin.prune_figures(db, now - timedelta(days=1)) == 1
    async with db.session(write=False) as session:
        left = await session.scalar(sa.select(sa.func.count()).select_from(ReplicaFigures))
    assert left == 1
