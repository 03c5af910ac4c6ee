"""The dashboard over TestClient: login and sessions, CSRF, roles and isolation, the overview
grid, rollback, log streaming, the public status page, domains/certificates and findings, and
the leak test on every page."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse.certificates import service as certificates
from pilothouse.certificates.models import Certificate
from pilothouse.certificates.observe import Seen
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.findings.models import SecurityFinding
from pilothouse.healthchecks.models import HealthState, Incident
from pilothouse.replicas.models import Replica
from pilothouse.setup import ensure_master_key
from pilothouse.web.models import WebSession
from tests.conftest import SHA, Api, one_store
from tests.web.support import browser, csrf_of, login

SECRET = "sntl-WEB-5b7e19"
DSN_PASSWORD = "sntl-WEBDSN-0c44a2"


def _deploy(api: Api, version: str, to: str = "success") -> dict[str, Any]:
    dep = api.ok(api.post("/deployments", {"service": "web", "version": version}), 201)
    for step in ("building", "deploying", to):
        api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))
    return dep  # type: ignore[no-any-return]


def _sql(db_url: str, *rows: Any) -> None:
    """Rows the worker would have written (health states, replicas, incidents)."""

    async def run() -> None:
        db = Database(db_url)
        try:
            async with db.session() as session:
                session.add_all(rows)
        finally:
            await db.dispose()

    asyncio.run(run())


def test_login_session_cookie_csrf_and_logout(api: Api, admin_token: str) -> None:
    client = browser(api.client.app)
    first = client.get("/services/x", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=/services/x"
    # the login form's CSRF: a token without the matching cookie is refused
    refused = client.post("/login", data={"token": admin_token, "csrf": "forged"})
    assert refused.status_code == 403 and "ph_session" not in refused.cookies
    assert login(client, "ph_not-a-token").status_code == 401
    done = login(client, admin_token, next="//evil.example/")
    assert done.status_code == 303 and done.headers["location"] == "/"  # no open redirect
    cookie = done.headers["set-cookie"]
    assert "ph_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP; see the TLS test
    assert admin_token not in cookie
    page = client.get("/")
    assert page.status_code == 200 and "admin (admin)" in page.text
    # every form carries the CSRF token; a POST without it (or with another) is refused
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.post("/logout", data={"csrf": "0" * 64}).status_code == 403
    # a token that is not ASCII is refused too, not a server error
    assert client.post("/logout", headers={"X-CSRF-Token": b"\xe9\xff"}).status_code == 403
    assert client.post("/logout", data={"csrf": "\u00e9t\u00e9"}).status_code == 403
    out = client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    # the old cookie is worthless afterwards (the session row is gone)
    stale = browser(api.client.app)
    stale.cookies.set("ph_session", done.cookies["ph_session"])
    assert stale.get("/", follow_redirects=False).status_code == 303
    # an htmx request is told to go to the login page instead of getting it as a fragment
    asked = stale.get("/", headers={"HX-Request": "true"})
    assert asked.status_code == 401 and asked.headers["HX-Redirect"].startswith("/login")


@one_store
def test_cookie_is_secure_over_tls_and_revoking_the_token_ends_the_session(
    settings: Settings, api: Api
) -> None:
    token = api.user("tess", "viewer")
    tls = browser(api.client.app, base_url="https://testserver")
    assert "Secure" in login(tls, token).headers["set-cookie"]
    assert tls.get("/", follow_redirects=False).status_code == 200
    tokens = api.ok(api.get("/tokens", params={"user": "tess"}))
    api.ok(api.delete(f"/tokens/{tokens[0]['id']}"))
    assert tls.get("/", follow_redirects=False).status_code == 303


@one_store
def test_roles_and_isolation(settings: Settings, api: Api, world: dict[str, Any]) -> None:
    ensure_master_key(settings.master_key_path)
    api.client.put(
        "/api/v1/environments/prod/vars/API_KEY",
        json={"value": SECRET, "is_secret": True},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    api.ok(
        api.post(
            "/backup-targets?check=false",
            {"name": "db", "dsn": "postgresql://u:pw@127.0.0.1:5432/app", "environment": "prod"},
        ),
        201,
    )
    dep = _deploy(api, "v1.0.0")
    _deploy(api, "v1.1.0")
    svc = world["service"]["id"]
    vera_token = api.user("vera", "viewer")
    api.ok(api.post("/environments/prod/grants", {"user": "vera"}), 204)
    vera = browser(api.client.app, vera_token)
    pages = {
        "/": "web",
        f"/services/{svc}": "API_KEY",
        f"/deployments/{dep['id']}": "v1.0.0",
        "/backups": "db",
    }
    for path, shown in pages.items():
        page = vera.get(path)
        assert page.status_code == 200 and shown in page.text, path
        for button in ("Reveal", "Back up now", "Roll back", "Make public", "Audit</a>"):
            assert button not in page.text, (path, button)
    csrf = csrf_of(vera.get("/").text)
    assert vera.get("/audit").status_code == 403
    for path, data in (
        (f"/services/{svc}/vars/reveal", {"key": "API_KEY"}),
        (f"/deployments/{dep['id']}/rollback", {}),
        (f"/services/{svc}/public", {"public": "on"}),
    ):
        refused = vera.post(path, data={"csrf": csrf, **data})
        assert refused.status_code == 403 and SECRET not in refused.text, path
    assert vera.get(f"/deployments/{dep['id']}/rollback").status_code == 403
    # another user's records: 404 on every page, absent from the grid
    other = browser(api.client.app, api.user("otto", "operator"))
    assert "No services match" in other.get("/").text
    for path in (
        f"/services/{svc}",
        f"/services/{svc}/chart.json",
        f"/deployments/{dep['id']}",
        f"/deployments/{dep['id']}/logs",
        f"/deployments/{dep['id']}/rollback",
    ):
        assert other.get(path).status_code == 404, path
    assert "No backup targets." in other.get("/backups").text


def test_overview_grid(settings: Settings, api: Api, db_url: str) -> None:
    for env in ("prod", "staging"):
        api.ok(
            api.post(
                "/environments", {"name": env, "type": "production" if env == "prod" else "staging"}
            ),
            201,
        )
    ids = {}
    for env, name in [("prod", "web"), ("prod", "api"), ("staging", "web")] + [
        ("staging", f"s{i:02d}") for i in range(10)
    ]:
        body = {"environment": env, "name": name, "command": "run {port}", "target_replicas": 2}
        ids[(env, name)] = api.ok(api.post("/services", body), 201)["id"]
    web = ids[("prod", "web")]
    api.ok(api.post("/artifacts", {"service": web, "version": "v3.1.4", "commit_sha": SHA}), 201)
    dep = api.ok(api.post("/deployments", {"service": web, "version": "v3.1.4"}), 201)
    for step in ("building", "deploying", "success"):
        api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))
    api_id = uuid.UUID(ids[("prod", "api")])
    now = utcnow()
    _sql(
        db_url,
        HealthState(
            target=f"service:{web}",
            service_id=uuid.UUID(web),
            status="healthy",
            streak_status="healthy",
            streak=3,
        ),
        HealthState(
            target=f"service:{api_id}",
            service_id=api_id,
            status="unhealthy",
            streak_status="unhealthy",
            streak=3,
        ),
        Incident(
            service_id=api_id, started_at=now - timedelta(hours=1), status="unhealthy", cause="down"
        ),
        Replica(service_id=uuid.UUID(web), status="running"),
    )
    client = browser(api.client.app, api.token)
    page = client.get("/", params={"env": "prod"})
    assert page.status_code == 200
    rows = {r.split("</tr>")[0] for r in page.text.split('<tr data-service="')[1:]}
    web_row = next(r for r in rows if r.startswith("web"))
    api_row = next(r for r in rows if r.startswith("api"))
    assert "healthy" in web_row and "v3.1.4" in web_row and "1 / 2" in web_row
    assert "100 %" in web_row and "never" in web_row
    assert "unhealthy" in api_row and ">1</a>" in api_row and "100 %" not in api_row
    assert "(2)" in page.text and "s00" not in page.text
    # status filter, name search, pagination (13 services, 10 a page)
    assert '"api"' not in client.get("/", params={"status": "healthy"}).text
    assert 'Services <span class="muted">(1)</span>' in client.get("/", params={"q": "api"}).text
    first = client.get("/", params={"per_page": 10})
    refused = client.get("/", params={"page": 0})  # an HTML error on a page, naming the rule
    assert refused.status_code == 422 and "page: Input should be greater" in refused.text
    assert refused.headers["content-type"].startswith("text/html")
    assert "Page 1 of 2" in first.text and "s08" not in first.text
    second = client.get("/", params={"per_page": 10, "page": 2})
    assert "s08" in second.text and 'rel="prev"' in second.text
    # the htmx refresh returns the grid alone
    fragment = client.get("/", params={"env": "prod"}, headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<section id="grid"') and "<html" not in fragment.text


@one_store
def test_rollback_with_confirmation_and_the_log_stream(
    settings: Settings, api: Api, world: dict[str, Any]
) -> None:
    _deploy(api, "v1.0.0")
    live = _deploy(api, "v1.1.0")
    api.ok(api.post(f"/deployments/{live['id']}/logs", {"message": "migrated 3 tables"}), 201)
    client = browser(api.client.app, api.token)
    page = client.get(f"/deployments/{live['id']}")
    assert "migrated 3 tables" in page.text and f"/deployments/{live['id']}/rollback" in page.text
    confirm = client.get(f"/deployments/{live['id']}/rollback")
    assert "v1.0.0" in confirm.text and "Yes, roll back" in confirm.text
    done = client.post(
        f"/deployments/{live['id']}/rollback",
        data={"csrf": csrf_of(confirm.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    rolled = client.get(done.headers["location"])
    assert "Rollback v1.0.0" in rolled.text and "pending" in rolled.text
    # the scaling section (autoscaling's policy and events, through its service functions)
    api.ok(
        api.client.put(
            f"/api/v1/services/{world['service']['id']}/scaling",
            json={"min_instances": 1, "max_instances": 3},
            headers={"Authorization": f"Bearer {api.token}"},
        )
    )
    service_page = client.get(f"/services/{world['service']['id']}").text
    assert 'id="scaling-h"' in service_page and "1 to 3" in service_page
    # back up now (operator): queued for the worker, shown on the page
    api.ok(
        api.post(
            "/backup-targets?check=false",
            {"name": "appdb", "dsn": "sqlite:////tmp/none.db", "environment": "prod"},
        ),
        201,
    )
    backups_page = client.get("/backups")
    target = api.ok(api.get("/backup-targets"))[0]["id"]
    queued = client.post(
        f"/backups/targets/{target}/run",
        data={"csrf": csrf_of(backups_page.text)},
        follow_redirects=False,
    )
    assert queued.status_code == 303
    assert [b["status"] for b in api.ok(api.get("/backups"))] == ["in_progress"]
    assert "in progress" in client.get("/backups").text
    # a finished deployment's stream sends its lines, its status, and ends
    with client.stream("GET", f"/deployments/{live['id']}/logs") as stream:
        body = "".join(stream.iter_text())
    assert "event: log" in body and "migrated 3 tables" in body
    assert "event: status" in body and "event: end" in body


@one_store
def test_public_status_page_is_opt_in(settings: Settings, api: Api, world: dict[str, Any]) -> None:
    anonymous = browser(api.client.app)
    assert anonymous.get("/status/prod/web").status_code == 404
    admin = browser(api.client.app, api.token)
    svc = world["service"]["id"]
    page = admin.get(f"/services/{svc}")
    admin.post(f"/services/{svc}/public", data={"csrf": csrf_of(page.text), "public": "on"})
    shown = anonymous.get("/status/prod/web")
    assert shown.status_code == 200 and shown.text.count('<li class="s-') == 90
    assert "Log out" not in shown.text and "command" not in shown.text
    assert anonymous.get("/status/prod/nope").status_code == 404
    assert "public_status" in str(api.ok(api.get("/audit")))


@one_store
def test_secrets_never_reach_any_page(settings: Settings, api: Api, world: dict[str, Any]) -> None:
    """The leak test (tests/variables) extended to the dashboard: every page and fragment, for
    every role, holds neither the secret variable, the DSN's password, nor a token."""
    ensure_master_key(settings.master_key_path)
    for key in ("API_KEY", "DATABASE_URL"):
        value = SECRET if key == "API_KEY" else f"postgresql://u:{SECRET}@db/app"
        api.client.put(
            f"/api/v1/environments/prod/vars/{key}",
            json={"value": value, "is_secret": True},
            headers={"Authorization": f"Bearer {api.token}"},
        )
    dsn = f"postgresql://u:{DSN_PASSWORD}@127.0.0.1:5432/app"
    target = api.ok(
        api.post("/backup-targets?check=false", {"name": "db", "dsn": dsn, "environment": "prod"}),
        201,
    )
    live = _deploy(api, "v1.0.0")
    api.ok(api.post(f"/deployments/{live['id']}/logs", {"message": f"using {SECRET}"}), 201)
    report = json.loads(_report(("KEY-1", "app/settings.py", "8.0")))
    report["runs"][0]["results"][0]["message"]["text"] = f"API_KEY = {SECRET!r}"
    _import(api, "v1.0.0", json.dumps(report))
    svc = world["service"]["id"]
    tokens = {"admin": api.token}
    for name, role in (("ola", "operator"), ("vera", "viewer")):
        tokens[name] = api.user(name, role)
        api.ok(api.post("/environments/prod/grants", {"user": name}), 204)
    paths = [
        "/",
        "/?env=prod&q=web",
        f"/services/{svc}",
        f"/services/{svc}/chart.json",
        f"/deployments/{live['id']}",
        f"/deployments/{live['id']}/rollback",
        "/backups",
        "/incidents",
        "/audit",
        "/findings",
        "/findings?status=any&severity=high&env=prod",
        f"/services/{svc}/findings",
        f"/services/{svc}/findings?severity=high&page=1",
        "/login",
    ]
    fragments = [
        ("/", "grid"),
        (f"/services/{svc}/findings", "findings"),
        (f"/services/{svc}", "live"),
        (f"/deployments/{live['id']}", "dep-status"),
    ]
    for who, token in tokens.items():
        client = browser(api.client.app, token)
        seen = [client.get(p).text for p in paths]
        seen += [
            client.get(p, headers={"HX-Request": "true", "HX-Target": t}).text for p, t in fragments
        ]
        with client.stream("GET", f"/deployments/{live['id']}/logs") as stream:
            seen.append("".join(stream.iter_text()))
        seen.append(str(client.cookies))
        for text in seen:
            for leak in (SECRET, DSN_PASSWORD, *tokens.values()):
                assert leak not in text, (who, leak, text[:200])
    assert target["name"] in browser(api.client.app, api.token).get("/backups").text
    # a triage button's answer (the finding's row) holds none of them either
    finding = api.ok(api.get("/findings?status=open"))[0]["id"]
    ops = browser(api.client.app, tokens["ola"])
    row = ops.post(
        f"/findings/{finding}/triage",
        data={
            "csrf": csrf_of(ops.get("/findings").text),
            "action": "false-positive",
            "reason": "x",
        },
        headers={"HX-Request": "true"},
    )
    assert row.status_code == 200 and "false positive" in row.text
    assert all(leak not in row.text for leak in (SECRET, DSN_PASSWORD, *tokens.values()))
    # the admin's reveal shows the one value asked for, and audits that key alone
    admin = browser(api.client.app, api.token)
    csrf = csrf_of(admin.get(f"/services/{svc}").text)
    revealed = admin.post(
        f"/services/{svc}/vars/reveal",
        data={"csrf": csrf, "key": "API_KEY"},
        headers={"HX-Request": "true"},
    )
    assert SECRET in revealed.text and "DATABASE_URL" not in revealed.text
    reveals = [a for a in api.ok(api.get("/audit")) if a["action"] == "var_reveal"]
    only = {"environment": "prod", "scope": "web", "variables": ["API_KEY"]}
    assert reveals[0]["changes"] == only


@one_store
def test_sessions_past_their_end_are_pruned_by_the_registered_loop(
    settings: Settings, api: Api, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pilothouse.web import sessions as web_sessions
    from tests.retention_support import run_registered

    def count() -> int:
        async def run() -> int:
            db = Database(db_url)
            try:
                async with db.session(write=False) as session:
                    found = await session.scalar(sa.select(sa.func.count()).select_from(WebSession))
                    return int(found or 0)
            finally:
                await db.dispose()

        return asyncio.run(run())

    browser(api.client.app, api.token)  # lasts 12 h
    browser(api.client.app, api.user("tess", "viewer"))
    tokens = api.ok(api.get("/tokens", params={"user": "tess"}))
    api.ok(api.delete(f"/tokens/{tokens[0]['id']}"))
    assert count() == 2
    run_registered(
        settings, "web.sessions.prune", at=utcnow(), clock_in=web_sessions, monkeypatch=monkeypatch
    )
    assert count() == 1  # the revoked token's
    run_registered(
        settings,
        "web.sessions.prune",
        at=utcnow() + timedelta(hours=13),
        clock_in=web_sessions,
        monkeypatch=monkeypatch,
    )
    assert count() == 0


def _timeline_of(html: str) -> str:
    start = html.index('<h2 id="timeline-h">')
    return html[start : html.index("</ol>", start)]


@one_store
def test_scaling_thresholds_and_events_on_the_service_page(
    settings: Settings, api: Api, world: dict[str, Any]
) -> None:
    """Thresholds are fractions (of 100% for CPU and memory, of metric_target for a named
    metric), shown as the decision's sentences show them; scaling events are on the timeline."""
    svc = world["service"]["id"]
    client = browser(api.client.app, api.token)
    api.ok(api.put(f"/services/{svc}/scaling", {"min_instances": 1, "max_instances": 3}))
    page = client.get(f"/services/{svc}").text
    assert "up above 80%, down below 40%" in page and "0.8 %" not in page
    named = {"metric": "queue_depth", "metric_target": 50.0, "scale_down_threshold": 0.3}
    api.ok(api.put(f"/services/{svc}/scaling", named))
    assert "up above 40, down below 15" in client.get(f"/services/{svc}").text
    # a scale by hand writes a manual_scale event: on the timeline with the deployments
    _deploy(api, "v1.0.0")
    api.ok(api.post(f"/services/{svc}/scale", {"target_replicas": 2}))
    timeline = _timeline_of(client.get(f"/services/{svc}").text)
    assert "manual scale 1 → 2: scaled by hand by admin from 1 to 2 replicas" in timeline
    assert "deploy v1.0.0" in timeline


@one_store
def test_the_log_stream_ends_with_the_session(
    settings: Settings, api: Api, world: dict[str, Any]
) -> None:
    """A live log stream re-checks its session every PILOTHOUSE_WEB_POLL_SECONDS: logging out,
    or revoking the token the session came from, ends it (with `end`, so htmx stops)."""
    settings.web_poll_seconds = settings.web_sse_ping_seconds = 0.2
    dep = api.ok(api.post("/deployments", {"service": "web", "version": "v1.0.0"}), 201)
    other = api.user("ada", "admin")

    def log_out(client: Any) -> None:
        page = client.get(f"/deployments/{dep['id']}")
        assert client.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 200

    def revoke(_: Any) -> None:
        [token] = api.ok(api.get("/tokens", params={"user": "ada"}))
        api.ok(api.delete(f"/tokens/{token['id']}"))

    for token, end_session in ((api.token, log_out), (other, revoke)):
        client = browser(api.client.app, token)
        with client.stream("GET", f"/deployments/{dep['id']}/logs") as stream:
            chunks = stream.iter_text()
            body = next(chunks)
            while "event: status" not in body:
                body += next(chunks)
            assert "data: pending" in body
            end_session(client)
            ended = time.monotonic()
            for chunk in chunks:  # pings keep coming while the stream lives
                body += chunk
                assert time.monotonic() - ended < 10, "the stream outlived its session"
        assert "event: end" in body and "session ended" in body


def _report(*results: tuple[str, str, str]) -> str:
    """A SARIF report: (rule id, path, security-severity) per result."""
    found = [
        {
            "ruleId": rule,
            "level": "warning",
            "message": {"text": f"{rule} in {path}"},
            "properties": {"security-severity": score},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": path},
                        "region": {"startLine": 12},
                    }
                }
            ],
        }
        for rule, path, score in results
    ]
    run = {"tool": {"driver": {"name": "scanner", "rules": []}}, "results": found}
    return json.dumps({"version": "2.1.0", "runs": [run]})


async def _past_due(db_url: str, rule_id: str) -> None:
    """Time passing: the finding's SLA due date is an hour ago."""
    db = Database(db_url)
    try:
        async with db.session() as session:
            await session.execute(
                sa.update(SecurityFinding)
                .where(SecurityFinding.rule_id == rule_id)
                .values(sla_due_at=utcnow() - timedelta(hours=1))
            )
    finally:
        await db.dispose()


def _import(api: Api, version: str, report: str, target: str = "web") -> None:
    answer = api.client.post(
        f"/api/v1/scans/import?environment=prod&service=web&artifact={version}&target={target}",
        content=report,
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert answer.status_code == 201, answer.text


@one_store
def test_domains_certificates_and_findings_on_the_service_page_and_the_findings_page(
    settings: Settings, api: Api, world: dict[str, Any], db_url: str
) -> None:
    """The service page shows the service's domains (DNS status, certificate days left) and
    the open findings of the running artifact only; /findings filters, and isolates users."""
    svc = world["service"]["id"]
    settings.dns_target = "edge.example.net"
    api.ok(api.post("/domains", {"domain": "shop.example.com", "service": "web"}), 201)
    api.ok(api.post("/domains", {"domain": "api.example.com", "service": "web"}), 201)
    cert = api.ok(api.post("/certificates", {"host": "shop.example.com"}), 201)

    async def observe() -> None:  # what a handshake would have recorded
        db = Database(db_url)
        try:
            async with db.session() as session:
                row = await session.get(Certificate, uuid.UUID(cert["id"]))
                assert row is not None
                now = utcnow()
                until = now + timedelta(days=9.5)
                seen = Seen(handshake_ok=True, chain_valid=True, not_after=until)
                certificates.apply(row, seen, now)
        finally:
            await db.dispose()

    asyncio.run(observe())
    _deploy(api, "v1.0.0")
    _import(api, "v1.0.0", _report(("SQLI-1", "app/db.py", "9.5"), ("XSS-2", "app/ui.py", "5.0")))
    _import(api, "v1.1.0", _report(("NEXT-3", "app/next.py", "7.5")))
    asyncio.run(_past_due(db_url, "NEXT-3"))
    client = browser(api.client.app, api.token)
    page = client.get(f"/services/{svc}").text
    domains_part = page[page.index('id="domains-h"') : page.index('id="findings-h"')]
    assert "shop.example.com" in domains_part and "api.example.com" in domains_part
    assert "pending" in domains_part and ">9<" in domains_part and "none tracked" in domains_part
    findings_part = page[page.index('id="findings-h"') :]
    findings_part = findings_part[: findings_part.index("</section>")]
    left_out = "accepted risks and false positives left out"
    counts = "1 critical, 0 high, 1 medium, 0 low."
    newest = "its newest scan of each scope"
    assert f"Findings of v1.0.0 ({newest}; {left_out}): {counts}" in findings_part
    assert "SQLI-1" in findings_part and "app/db.py" in findings_part
    assert "XSS-2" in findings_part and "NEXT-3" not in findings_part
    assert findings_part.index("SQLI-1") < findings_part.index("XSS-2")
    assert "not in a later scan" in findings_part  # the v1.1.0 scan resolved them in the store
    # the findings page: every visible finding, filtered by severity, status and environment
    listed = client.get("/findings?status=any").text
    assert all(rule in listed for rule in ("SQLI-1", "XSS-2", "NEXT-3"))
    opened = client.get("/findings").text
    assert "NEXT-3" in opened and "SQLI-1" not in opened
    assert 'href="/findings" aria-current="page"' in listed
    high = client.get("/findings?severity=high&env=prod").text
    assert "NEXT-3" in high and "SQLI-1" not in high and "XSS-2" not in high
    resolved = client.get("/findings?status=resolved&severity=critical").text
    assert "SQLI-1" in resolved and "XSS-2" not in resolved and "NEXT-3" not in resolved
    assert "No findings match." in client.get("/findings?status=false_positive").text
    assert high.count("SLA breached") == 1 and "SLA breached" not in resolved
    # pages of 50: a dependency scan of another target with 55 low findings
    many = [(f"DEP-{i:02}", f"lib/m{i:02}.py", "2.0") for i in range(55)]
    _import(api, "v1.0.0", _report(*many), target="deps")
    first = client.get("/findings?severity=low").text
    assert first.count("<tr><td>low</td>") == 50 and "page=2" in first and "Previous" not in first
    second = client.get("/findings?severity=low&page=2").text
    assert second.count("<tr><td>low</td>") == 5 and "page=1" in second and "Next" not in second
    # another user sees none of them, and the environment is not theirs (404)
    other = browser(api.client.app, api.user("otto", "operator"))
    assert "No findings match." in other.get("/findings?status=any").text
    assert other.get("/findings?env=prod").status_code == 404
