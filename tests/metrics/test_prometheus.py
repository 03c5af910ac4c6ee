"""The `prometheus` metric source: PromQL built from questions (table), and answers from a real
Prometheus server (Debian's package) started on a loopback port, scraping the sample app."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from pilothouse.metrics.prometheus import (
    PrometheusSource,
    PrometheusSpec,
    Question,
    SourceError,
    promql,
)
from tests.conftest import free_port
from tests.metrics.support import prometheus, sampleapp

MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (Question("up", "latest", MIN), "last_over_time(up[60s])"),
        (Question("cpu", "avg", MIN, {"service": "web"}), 'avg_over_time(cpu{service="web"}[60s])'),
        (Question("cpu", "max", timedelta(seconds=1.5)), "max_over_time(cpu[2s])"),
        (Question("lat", "p95", MIN), "quantile_over_time(0.95, lat[60s])"),
        (Question("lat", "p50", MIN), "quantile_over_time(0.5, lat[60s])"),
        (Question("reqs_total", "rate", MIN), "rate(reqs_total[60s])"),
        (Question("lat", "rolling5m", MIN), "avg_over_time(lat[5m])"),
        (
            Question("reqs_total", "rate", MIN, {"env": "prod"}, by=("service",)),
            'sum by (service) (rate(reqs_total{env="prod"}[60s]))',
        ),
        (
            Question("lat", "p99", MIN, by=("service", "replica")),
            "avg by (service, replica) (quantile_over_time(0.99, lat[60s]))",
        ),
        (  # label values are escaped, never spliced
            Question("up", "latest", MIN, {"job": 'a"} or vector(1) #'}),
            'last_over_time(up{job="a\\"} or vector(1) #"}[60s])',
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
        Question("up", "latest", MIN, by=("a b",)),
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

        latest = await source.ask(Question("up", "latest", MIN, {"job": "sampleapp"}))
        assert [(v.tags["instance"], v.value) for v in latest] == [(f"127.0.0.1:{port}", 1.0)]

        rate = await source.ask(
            Question("http_requests_total", "rate", MIN, {"job": "sampleapp"}, by=("code",))
        )
        by_code = {v.tags["code"]: v.value for v in rate}
        assert by_code["200"] > 0 and by_code["500"] > 0
        # The sample app fails one request in four: the error share from Prometheus says so.
        share = await source.query(
            'sum(increase(http_requests_total{path="/",code="500"}[1m]))'
            ' / sum(increase(http_requests_total{path="/"}[1m]))'
        )
        assert share[0].value == pytest.approx(0.25, abs=0.05)

        p95 = await source.ask(Question("http_active_connections", "p95", MIN))
        assert p95 and p95[0].value >= 0

        series = await source.query_range(
            'up{job="sampleapp"}', latest[0].at - MIN, latest[0].at, timedelta(seconds=5)
        )
        assert series and all(v == 1.0 for _t, v in series[0][1])

        with pytest.raises(SourceError, match="bad_data"):
            await source.query("rate(up[")
