"""The `prometheus` metric source: PromQL built from questions (table), and answers from a real
Prometheus server (Debian's package) started on a loopback port, scraping the sample app."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from pilothouse.access import Principal
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.metrics import scrape
from pilothouse.metrics.prometheus import (
    EmbeddedSource,
    PrometheusSource,
    PrometheusSpec,
    Question,
    SourceError,
    promql,
    source_for,
)
from pilothouse.replicas.models import Replica
from pilothouse.services import service as services
from tests.conftest import free_port
from tests.metrics.support import prometheus, sampleapp

MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (Question("up", "latest", MIN), "max (last_over_time(up[60s]))"),
        (
            Question("cpu", "avg", MIN, {"service": "web"}),
            'sum (sum_over_time(cpu{service="web"}[60s])) / '
            'sum (count_over_time(cpu{service="web"}[60s]))',
        ),
        (Question("cpu", "max", timedelta(seconds=1.5)), "max (max_over_time(cpu[2s]))"),
        (Question("cpu", "min", MIN), "min (min_over_time(cpu[60s]))"),
        (Question("cpu", "count", MIN), "sum (count_over_time(cpu[60s]))"),
        (Question("cpu", "sum", MIN), "sum (sum_over_time(cpu[60s]))"),
        (Question("lat", "p95", MIN), "max (quantile_over_time(0.95, lat[60s]))"),
        (Question("lat", "p50", MIN), "max (quantile_over_time(0.5, lat[60s]))"),
        (Question("reqs_total", "rate", MIN), "sum (rate(reqs_total[60s]))"),
        (Question("reqs_total", "increase", MIN), "sum (increase(reqs_total[60s]))"),
        (
            Question("reqs_total", "rate", MIN, {"env": "prod"}, group_by="service"),
            'sum by (service) (rate(reqs_total{env="prod"}[60s]))',
        ),
        (
            Question("lat", "p99", MIN, group_by="replica"),
            "max by (replica) (quantile_over_time(0.99, lat[60s]))",
        ),
        (  # label values are escaped, never spliced
            Question("up", "latest", MIN, {"job": 'a"} or vector(1) #'}),
            'max (last_over_time(up{job="a\\"} or vector(1) #"}[60s]))',
        ),
    ],
)
def test_promql(question: Question, expected: str) -> None:
    assert promql(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        Question("up or vector(1)", "latest", MIN),
        Question("up", "latest", MIN, {"bad-label": "x"}),
        Question("up", "latest", MIN, group_by="a b"),
        Question("up", "median", MIN),
    ],
)
def test_promql_refuses_what_is_not_a_name(question: Question) -> None:
    with pytest.raises(ValueError):
        promql(question)


def test_spec_is_validated() -> None:
    with pytest.raises(ValidationError):
        PrometheusSpec.model_validate({"type": "prometheus", "url": "not a url"})
    with pytest.raises(ValidationError):
        PrometheusSpec.model_validate({"url": "http://x:9090", "unknown": 1})


async def test_unreachable_prometheus_is_a_source_error_without_credentials() -> None:
    port = free_port()
    source = PrometheusSource(
        PrometheusSpec(url=f"http://user:hunter2@127.0.0.1:{port}", timeout=2)  # type: ignore[arg-type]
    )
    with pytest.raises(SourceError) as caught:
        await source.query("up")
    assert "unreachable" in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_real_prometheus_answers_like_the_embedded_store(tmp_path: Path) -> None:
    with (
        sampleapp(SAMPLE_ERROR_RATE="0.25") as port,
        prometheus(tmp_path, [f"127.0.0.1:{port}"]) as url,
    ):
        base = f"http://127.0.0.1:{port}"
        source = PrometheusSource(PrometheusSpec.model_validate({"url": url}))

        def traffic() -> None:
            with httpx.Client() as client:
                for _ in range(40):
                    client.get(base + "/")

        async def scraped_twice_with_traffic() -> bool:
            traffic()
            found = await source.query('count_over_time(up{job="sampleapp"}[1m])')
            return bool(found) and found[0].value >= 3

        # Prometheus needs a few scrapes before a rate exists.
        for _ in range(200):
            if await scraped_twice_with_traffic():
                break
        else:
            raise AssertionError("Prometheus did not scrape the sample app")

        latest = await source.aggregate(
            "up", {"job": "sampleapp"}, window=MIN, stat="latest", group_by="instance"
        )
        assert latest == {f"127.0.0.1:{port}": 1.0}

        by_code = await source.aggregate(
            "http_requests_total", {"job": "sampleapp"}, window=MIN, stat="rate", group_by="code"
        )
        assert (by_code["200"] or 0) > 0 and (by_code["500"] or 0) > 0
        # The sample app fails one request in four: the error share from Prometheus says so.
        share = await source.query(
            'sum(increase(http_requests_total{path="/",code="500"}[1m]))'
            ' / sum(increase(http_requests_total{path="/"}[1m]))'
        )
        assert share[0].value == pytest.approx(0.25, abs=0.05)

        p95 = await source.aggregate("http_active_connections", window=MIN, stat="p95")
        assert set(p95) == {""} and (p95[""] or 0) >= 0

        now = datetime.now(UTC)
        series = await source.query_range(
            'up{job="sampleapp"}', now - MIN, now, timedelta(seconds=5)
        )
        assert series and all(v == 1.0 for _t, v in series[0][1])

        with pytest.raises(SourceError, match="bad_data"):
            await source.query("rate(up[")


async def test_prometheus_and_the_embedded_store_answer_alike(
    db: Database, admin: Principal, tmp_path: Path
) -> None:
    """The same call, `aggregate(...)`, on both sources scraping the same sample app."""
    with sampleapp() as port, prometheus(tmp_path, [f"127.0.0.1:{port}"]) as url:
        async with db.session() as session:
            await environments.create_environment(session, admin, name="e")
            svc = await services.create_service(
                session, admin, environment="e", name="web", resources={}
            )
            svc.status = "running"
            session.add(Replica(service_id=svc.id, status="running", ports={"http": port}))
        with httpx.Client() as client:
            for _ in range(30):
                client.get(f"http://127.0.0.1:{port}/")
        embedded = source_for(db, None)
        remote = source_for(db, {"type": "prometheus", "url": url})
        assert isinstance(embedded, EmbeddedSource) and isinstance(remote, PrometheusSource)
        await scrape.scrape(db, await scrape.discover(db))
        tags = {"path": "/", "code": "200"}
        ours = await embedded.aggregate("http_requests_total", tags, window=MIN, stat="latest")
        assert ours == {"": 30.0}
        for _ in range(300):  # until Prometheus has scraped the same count
            theirs = await remote.aggregate("http_requests_total", tags, window=MIN, stat="latest")
            if theirs == ours:
                break
            await asyncio.sleep(0.1)
        assert theirs == ours
        grouped = await embedded.aggregate(
            "http_requests_total", {"path": "/"}, window=MIN, stat="latest", group_by="code"
        )
        assert grouped == await remote.aggregate(
            "http_requests_total", {"path": "/"}, window=MIN, stat="latest", group_by="code"
        )
