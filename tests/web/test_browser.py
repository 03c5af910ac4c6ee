"""The dashboard in a real browser: Debian's Chromium driven by Playwright for Python.

One scenario on one store (the store is covered by test_pages.py), one browser for the module:
log in, see a deployment appear live on the overview and its logs stream, roll back with the
button, reveal a secret as admin and fail to as a viewer, see an incident open and close, open
the status page logged out; axe-core reports no serious or critical violation on any page.
With PILOTHOUSE_SCREENSHOTS=1 each page is saved under docs/images/ (for README and the docs).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.healthchecks.models import Incident
from pilothouse.setup import ensure_master_key
from tests.conftest import Api, LiveServer, one_store
from tests.web.test_pages import _import, _report

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SECRET = "sntl-BROWSER-91d3c0"
DEPLOYING = "() => document.querySelector('tr[data-service=web]').innerText.includes('deploying')"
LIVE = 5000  # ms: a generous bound for "within 2 s" on a loaded CI machine


@pytest.fixture
def chromium(api: Api) -> Iterator[Any]:
    """One browser for the module's one scenario; started after the store and the app (the
    sync Playwright API keeps an event loop running in this thread while it is open)."""
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (./dev test installs Debian's chromium)")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def _axe(page: Any, name: str) -> None:
    """No serious or critical accessibility violation on the page (axe-core, injected)."""
    page.add_script_tag(content=AXE)
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
    )
    assert found == [], f"{name}: {found}"


def _shot(page: Any, name: str) -> None:
    if os.environ.get("PILOTHOUSE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=False)


def _in_store(db_url: str, change: Callable[[AsyncSession], Awaitable[None]]) -> None:
    """What the health monitor would write, written from another thread (Playwright's loop
    runs in this one)."""

    async def run() -> None:
        db = Database(db_url)
        try:
            async with db.session() as session:
                await change(session)
        finally:
            await db.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def _open_incident(db_url: str, service_id: str) -> None:
    async def change(session: AsyncSession) -> None:
        session.add(Incident(service_id=uuid.UUID(service_id), status="unhealthy", cause="probe"))

    _in_store(db_url, change)


def _close_incidents(db_url: str) -> None:
    async def change(session: AsyncSession) -> None:
        await session.execute(sa.update(Incident).values(ended_at=utcnow()))

    _in_store(db_url, change)


def _login(browser: Any, url: str, token: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{url}/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/")
    return page


@one_store
def test_the_dashboard_in_chromium(
    chromium: Any, settings: Settings, api: Api, world: dict[str, Any], db_url: str
) -> None:
    ensure_master_key(settings.master_key_path)
    api.client.put(
        "/api/v1/environments/prod/vars/API_KEY",
        json={"value": SECRET, "is_secret": True},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    api.ok(
        api.post(
            "/backup-targets?check=false",
            {"name": "appdb", "dsn": "sqlite:////tmp/x.db", "environment": "prod"},
        ),
        201,
    )
    svc = world["service"]["id"]
    api.ok(api.patch(f"/services/{svc}", {"health_check": {"public_badge": True}}))

    def deploy(version: str, finish: bool = True) -> dict[str, Any]:
        dep = api.ok(api.post("/deployments", {"service": svc, "version": version}), 201)
        if finish:
            for step in ("building", "deploying", "success"):
                api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))
        return dep  # type: ignore[no-any-return]

    deploy("v1.0.0")
    _import(api, "v1.0.0", _report(("SQLI-1", "app/db.py", "9.5")))
    api.ok(api.post("/environments", {"name": "staging", "type": "staging"}), 201)
    for env, name in (("prod", "worker"), ("staging", "web"), ("staging", "worker")):
        body = {"environment": env, "name": name, "command": "run {port}", "target_replicas": 2}
        api.ok(api.post("/services", body), 201)
    viewer_token = api.user("vera", "viewer")
    api.ok(api.post("/environments/prod/grants", {"user": "vera"}), 204)
    settings.web_poll_seconds = 0.5  # live refreshes sooner than the 2 s default: a shorter test
    with LiveServer(settings) as server:
        url = server.url
        page = _login(chromium, url, api.token)
        row = page.locator('tr[data-service="web"]').first
        assert "healthy" not in row.inner_text()
        _axe(page, "overview")
        # a deployment appears on the open overview without a reload
        dep = deploy("v1.1.0", finish=False)
        page.wait_for_function(DEPLOYING, timeout=LIVE)
        _shot(page, "overview")
        # its page streams the logs as they are written
        page.goto(f"{url}/deployments/{dep['id']}")
        page.wait_for_timeout(300)  # the SSE connection opens
        api.ok(
            api.post(f"/deployments/{dep['id']}/logs", {"message": "pulling image layer 1"}), 201
        )
        page.locator("#logs", has_text="pulling image layer 1").wait_for(timeout=LIVE)
        _axe(page, "deployment")
        _shot(page, "deployment")
        for step in ("building", "deploying", "success"):
            api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))
        page.locator("[data-status='success']").wait_for(timeout=LIVE)
        # roll back with the button (and its confirmation page)
        page.reload()
        page.get_by_role("button", name="Roll back…").click()
        _axe(page, "rollback confirmation")
        page.get_by_role("button", name="Yes, roll back to v1.0.0").click()
        page.get_by_role("heading", name="Rollback v1.0.0").wait_for(timeout=LIVE)
        # the service page: reveal a secret as admin
        page.goto(f"{url}/services/{svc}")
        assert SECRET not in page.content()
        _axe(page, "service")
        _shot(page, "service")
        page.get_by_role("button", name="Reveal API_KEY (audited)").click()
        page.locator("[data-revealed='API_KEY']", has_text=SECRET).wait_for(timeout=LIVE)
        for path in ("/backups", "/audit", "/findings"):
            page.goto(url + path)
            _axe(page, path)
            _shot(page, path.strip("/"))
        # triage a finding with its button: the row changes in place (htmx)
        page.locator("summary", has_text="Triage").first.click()
        page.get_by_label("Reason").first.fill("test fixture, not shipped")
        _axe(page, "findings with the triage form open")
        page.get_by_role("button", name="False positive").first.click()
        status_cell = page.locator(
            "tbody tr td:nth-child(5)", has_text=re.compile("^false positive$")
        )
        status_cell.wait_for(timeout=LIVE)  # the status column, swapped in by htmx
        triaged = api.ok(api.get("/findings?status=false_positive"))
        assert [(f["rule_id"], f["triage_reason"]) for f in triaged] == [
            ("SQLI-1", "test fixture, not shipped")
        ]
        # incidents open and close on the open page
        page.goto(f"{url}/incidents")
        _open_incident(db_url, svc)
        page.locator("#incidents", has_text="open").wait_for(timeout=LIVE)
        _axe(page, "incidents")
        _shot(page, "incidents")
        _close_incidents(db_url)
        page.locator("#incidents", has_text="closed").wait_for(timeout=LIVE)
        # make the status page public, then open it logged out
        page.goto(f"{url}/services/{svc}")
        page.get_by_role("button", name="Make public").click()
        # a viewer sees no reveal button, and a forged reveal is refused
        viewer = _login(chromium, url, viewer_token)
        viewer.goto(f"{url}/services/{svc}")
        assert viewer.get_by_role("button", name="Reveal API_KEY (audited)").count() == 0
        status = viewer.evaluate(
            """async (svc) => {
                const csrf = document.querySelector('input[name=csrf]').value;
                const body = new URLSearchParams({csrf, key: 'API_KEY'});
                const r = await fetch(`/services/${svc}/vars/reveal`, {method: 'POST', body});
                return [r.status, (await r.text()).includes(secret)];
            }""".replace("secret", repr(SECRET)),
            svc,
        )
        assert status == [403, False]
        anonymous = chromium.new_context().new_page()
        anonymous.goto(f"{url}/status/prod/web")
        assert anonymous.locator("ol.bars li").count() == 90
        _axe(anonymous, "status page")
        _shot(anonymous, "status")
        anonymous.goto(f"{url}/login")
        _axe(anonymous, "login")
