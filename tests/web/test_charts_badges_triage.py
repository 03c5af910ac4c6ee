"""The service page's P50 line and uptime chart, its embeddable badges, the findings section's
pages, and the triage buttons (roles, CSRF, 403/404/409/422, the audit trail)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.findings.models import SecurityFinding
from pilothouse.healthchecks.models import Downtime, HealthRollup
from pilothouse.metrics import storage
from pilothouse.metrics.samples import Sample, write_samples
from pilothouse.services.models import Service
from pilothouse.web import present
from tests.conftest import Api, one_store
from tests.web.support import browser, csrf_of
from tests.web.test_pages import _deploy, _import, _report, _sql

HX = {"HX-Request": "true"}


def _floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


async def _probes(db_url: str, hour: datetime, now: datetime) -> None:
    """What the built-in metrics would have stored for one hour of probes, rolled up as the
    metrics loop does: the replica's (10..100 ms, P50 about 50 ms) and a TLS handshake's
    (5 s each, not a response of the service: left out of the P50)."""
    db = Database(db_url)
    try:
        tags = {"environment": "prod", "service": "web", "kind": "http"}
        replica = {**tags, "target": f"replica:{uuid.uuid4()}"}
        tls = {**tags, "kind": "tls", "target": "tls:web"}
        samples = [
            Sample(
                "pilothouse_probe_duration_seconds", replica, ms / 1000, hour + timedelta(minutes=i)
            )
            for i, ms in enumerate(range(10, 101, 10))
        ] + [
            Sample("pilothouse_probe_duration_seconds", tls, 5.0, hour + timedelta(minutes=i))
            for i in range(30)
        ]
        await write_samples(db, samples)
        await storage.rollup(db, now)
    finally:
        await db.dispose()


async def _backdate(db_url: str, service_id: str, days: int) -> None:
    db = Database(db_url)
    try:
        async with db.session() as session:
            await session.execute(
                sa.update(Service)
                .where(Service.id == uuid.UUID(service_id))
                .values(created_at=utcnow() - timedelta(days=days))
            )
    finally:
        await db.dispose()


def test_p50_line_and_the_uptime_chart(
    api: Api, world: dict[str, Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chart.json carries P50 per hour from the metric store's sketches next to avg and P95;
    the service page draws 30 days of uptime as an SVG with a title, a description and a
    labelled bar per day, and says which lines the response-time chart has."""
    # the chart covers the month so far; start it two days back so the hours below are in it
    monkeypatch.setattr(present, "month_start", lambda now: now - timedelta(days=2))
    svc = world["service"]["id"]
    now = utcnow()
    hour = _floor_hour(now) - timedelta(hours=2)
    earlier = hour - timedelta(hours=1)
    rollups = [
        HealthRollup(
            target=f"service:{svc}",
            hour=h,
            service_id=uuid.UUID(svc),
            count=10,
            healthy=10,
            degraded=0,
            unhealthy=0,
            avg_ms=55.0,
            p95_ms=95.0,
            max_ms=100.0,
        )
        for h in (earlier, hour)
    ]
    yesterday = _floor_hour(now) - timedelta(days=1)
    yesterday = yesterday.replace(hour=10)
    down = Downtime(
        service_id=uuid.UUID(svc),
        started_at=yesterday,
        ended_at=yesterday + timedelta(minutes=30),
        cause="unhealthy",
    )
    _sql(db_url, *rollups, down)
    asyncio.run(_probes(db_url, hour, now))
    asyncio.run(_backdate(db_url, svc, 40))
    client = browser(api.client.app, api.token)
    chart = client.get(f"/services/{svc}/chart.json").json()
    assert chart["t"] == [earlier.timestamp(), hour.timestamp()]
    assert chart["p95_ms"] == [95.0, 95.0] and chart["avg_ms"] == [55.0, 55.0]
    assert chart["p50_ms"][0] is None  # nothing rolled up in the metric store for that hour
    assert chart["p50_ms"][1] == pytest.approx(50.0, rel=0.03)  # the TLS probes left out
    page = client.get(f"/services/{svc}").text
    assert "average, P50 and P95" in page
    svg = page[page.index('<figure class="uptime-chart">') : page.index("</figure>")]
    assert 'role="img" aria-labelledby="up-title up-desc"' in svg
    assert '<title id="up-title">Uptime per day, last 30 days</title>' in svg
    day = yesterday.date()
    assert f"1 day(s) below 99.9 %; the lowest 97.91 % on {day}." in svg  # 30 min of 24 h
    assert svg.count("<rect ") == 30
    assert '<rect class="s-down"' in svg and f"<title>{day}: 97.91 %</title>" in svg
    assert f"<title>{now.date()}: 100 %</title>" in svg


@one_store
def test_badges_are_embeddable_and_link_to_the_status_page(api: Api, world: dict[str, Any]) -> None:
    svc = world["service"]["id"]
    client = browser(api.client.app, api.token)
    assert "Badges are off" in client.get(f"/services/{svc}").text
    api.ok(api.patch(f"/services/{svc}", {"health_check": {"public_badge": True}}))
    page = client.get(f"/services/{svc}").text
    part = page[page.index('id="badges-h"') : page.index("</section>", page.index('id="badges-h"'))]
    image = f"http://testserver/badge/{svc}/status.svg"
    link = "http://testserver/status/prod/web"
    assert f"[![web status]({image})]({link})" in part
    assert f"&lt;a href=&#34;{link}&#34;&gt;&lt;img src=&#34;{image}&#34;" in part
    assert "answers 404 until the service is made public" in part
    badge = client.get(image)  # the badge the snippet embeds is served (no login needed)
    assert badge.status_code == 200 and badge.headers["content-type"] == "image/svg+xml"
    csrf = csrf_of(page)
    client.post(f"/services/{svc}/public", data={"csrf": csrf, "public": "on"})
    public = client.get(f"/services/{svc}").text
    assert "answers 404 until" not in public
    assert browser(api.client.app).get(link).status_code == 200  # where the badge links


@one_store
def test_the_findings_section_pages_through_every_finding(api: Api, world: dict[str, Any]) -> None:
    """More than the old cap of 1,000 findings in one scan: the counts are whole, every
    finding has a page, and a severity shows its own pages."""
    svc = world["service"]["id"]
    _deploy(api, "v1.0.0")
    many = [(f"LOW-{i:04}", f"lib/m{i:04}.py", "2.0") for i in range(1003)]
    _import(api, "v1.0.0", _report(*many, ("HIGH-1", "app/a.py", "7.5")))
    client = browser(api.client.app, api.token)
    page = client.get(f"/services/{svc}").text
    part = page[page.index('id="findings-h"') :]
    assert "0 critical, 1 high, 0 medium, 1003 low." in part
    assert (
        "All (1004)" in part and f'href="/services/{svc}/findings?severity=low">low (1003)' in part
    )
    assert "Page 1 of 21 (1004 findings)" in part and "HIGH-1" in part
    reached: set[str] = set()
    for n in range(1, 22):  # every finding is on one of the pages
        shown = client.get(f"/services/{svc}/findings?page={n}").text
        reached.update(re.findall(r"<td>(LOW-\d{4}|HIGH-1)</td>", shown))
    assert len(reached) == 1004
    assert shown.count("<tr><td>low</td>") == 4 and "Next" not in shown
    lows = client.get(f"/services/{svc}/findings?severity=low&page=21").text
    assert lows.count("<tr><td>low</td>") == 3 and "Page 21 of 21 (1003 findings)" in lows
    assert "HIGH-1" not in lows and 'aria-current="true">low (1003)' in lows
    fragment = client.get(f"/services/{svc}/findings?severity=high", headers=HX).text
    assert fragment.startswith('<section aria-labelledby="findings-h"') and "HIGH-1" in fragment
    other = browser(api.client.app, api.user("otto", "operator"))
    assert other.get(f"/services/{svc}/findings").status_code == 404


async def _finding_id(db_url: str, rule: str) -> str:
    db = Database(db_url)
    try:
        async with db.session(write=False) as session:
            found = await session.scalar(
                sa.select(SecurityFinding.id).where(SecurityFinding.rule_id == rule)
            )
            return str(found)
    finally:
        await db.dispose()


def test_triage_buttons(settings: Settings, api: Api, world: dict[str, Any], db_url: str) -> None:
    """Operators triage from the findings page (htmx swaps the row; without JS a redirect);
    the rules are the capability's (a reason, an end date, the transition table), a viewer
    sees no button and is refused, another user's finding is 404, and each is audited."""
    _deploy(api, "v1.0.0")
    _import(api, "v1.0.0", _report(("SQLI-1", "app/db.py", "9.5"), ("XSS-2", "app/ui.py", "5.0")))
    sqli = asyncio.run(_finding_id(db_url, "SQLI-1"))
    xss = asyncio.run(_finding_id(db_url, "XSS-2"))
    ops = browser(api.client.app, api.user("olga", "operator"))
    api.ok(api.post("/environments/prod/grants", {"user": "olga"}), 204)
    listed = ops.get("/findings").text
    assert listed.count("<summary>Triage") == 2 and '<th scope="col">Triage</th>' in listed
    assert f'hx-post="/findings/{sqli}/triage"' in listed
    assert 'value="accept">Accept risk' in listed and 'value="reopen"' not in listed
    csrf = csrf_of(listed)
    url = f"/findings/{sqli}/triage"
    # the rules: a reason to mark a false positive (422 names it; the row comes back with it)
    refused = ops.post(url, data={"csrf": csrf, "action": "false-positive"}, headers=HX)
    assert refused.status_code == 422 and "reason: is required" in refused.text
    assert refused.text.startswith("<tr><td>critical</td>") and 'role="alert"' in refused.text
    no_until = ops.post(url, data={"csrf": csrf, "action": "accept", "reason": "ok"}, headers=HX)
    assert no_until.status_code == 422 and "until: is required" in no_until.text
    bad_date = {"csrf": csrf, "action": "accept", "reason": "ok", "until": "soon"}
    assert ops.post(url, data=bad_date, headers=HX).status_code == 422
    # without the CSRF token: refused
    assert ops.post(url, data={"action": "reopen"}).status_code == 403
    # htmx: the row comes back with its new status and the buttons that status allows
    done = ops.post(
        url, data={"csrf": csrf, "action": "false-positive", "reason": "test data"}, headers=HX
    )
    assert done.status_code == 200 and "false positive" in done.text
    assert 'value="reopen">Reopen' in done.text and 'value="accept"' not in done.text
    assert "<td>prod</td>" in done.text  # the findings page's row (with its environment)
    # the transition table: a false positive cannot be accepted (409, from what to what)
    until = (utcnow() + timedelta(days=30)).date().isoformat()
    again = {"csrf": csrf, "action": "accept", "reason": "x", "until": until}
    conflict = ops.post(url, data=again, headers=HX)
    assert conflict.status_code == 409 and "false_positive" in conflict.text
    # without JavaScript: a redirect back to where the button was pressed
    plain = ops.post(
        f"/findings/{xss}/triage",
        data={
            "csrf": csrf,
            "action": "accept",
            "reason": "behind the WAF",
            "until": until,
            "back": "/findings?status=any",
        },
        follow_redirects=False,
    )
    assert plain.status_code == 303 and plain.headers["location"] == "/findings?status=any"
    off_site = {"csrf": csrf, "action": "reopen", "back": "//evil.example/"}
    back = ops.post(f"/findings/{xss}/triage", data=off_site, follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == "/"
    # the service page's section has the same buttons; its row has no environment column
    section = ops.get(f"/services/{world['service']['id']}").text
    assert f'hx-post="/findings/{xss}/triage"' in section
    assert 'name="view" value="section"' in section
    reopened = {"csrf": csrf, "action": "false-positive", "reason": "dup", "view": "section"}
    row = ops.post(f"/findings/{xss}/triage", data=reopened, headers=HX)
    assert row.status_code == 200 and "<td>prod</td>" not in row.text
    ops.post(f"/findings/{xss}/triage", data={"csrf": csrf, "action": "reopen"}, headers=HX)
    # the API sees what the buttons did, and the audit trail has each, as the API writes them
    shown = api.ok(api.get(f"/findings/{sqli}"))
    assert shown["status"] == "false_positive" and shown["triage_reason"] == "test data"
    assert api.ok(api.get(f"/findings/{xss}"))["status"] == "open"  # accepted, then reopened
    trail = api.ok(api.get(f"/audit?entity_type=security_finding&entity_id={sqli}"))
    assert [e["action"] for e in trail] == ["finding.false-positive"]
    assert trail[0]["actor"] == "olga" and trail[0]["changes"]["reason"] == "test data"
    # a viewer sees no button and is refused anyway; another user's finding is not found
    vera = browser(api.client.app, api.user("vera", "viewer"))
    api.ok(api.post("/environments/prod/grants", {"user": "vera"}), 204)
    seen = vera.get("/findings?status=any").text
    assert "SQLI-1" in seen and "Triage" not in seen
    svc_page = vera.get(f"/services/{world['service']['id']}").text
    assert "XSS-2" in svc_page and "<summary>Triage" not in svc_page
    viewer_csrf = csrf_of(seen)
    forbidden = vera.post(url, data={"csrf": viewer_csrf, "action": "reopen"}, headers=HX)
    assert forbidden.status_code == 403
    otto = browser(api.client.app, api.user("otto", "operator"))
    otto_csrf = csrf_of(otto.get("/").text)
    assert otto.post(url, data={"csrf": otto_csrf, "action": "reopen"}).status_code == 404
    assert api.ok(api.get(f"/findings/{sqli}"))["status"] == "false_positive"
