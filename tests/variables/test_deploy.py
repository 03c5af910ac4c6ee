"""A deployment is refused while required variables are missing or malformed (every problem at
once), then the sample app receives its secrets; and the leak test: the sentinel values appear
nowhere outside the child process (API responses, CLI output, server and replica logs, the
database, a backup of pilothouse's own database)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from pilothouse.setup import ensure_master_key
from tests.conftest import production_store
from tests.engine_support import Client

SECRET_TOKEN = "424242:sntl-BOT-7c1e9a"
SECRET_PASSWORD = "sntl-PW-e5d1-multi\nline-part-sntl-2"
CLI_SECRET = "sntl-CLI-0b7d42f1"  # set with `pilothouse vars set --secret`
DOTENV_SECRET = "sntl-ENV-93ac5e07"  # imported from a .env file (a *_TOKEN name is secret)
SENTINELS = ("sntl-BOT-7c1e9a", "sntl-PW-e5d1", "line-part-sntl-2", "sntl-CLI-", "sntl-ENV-")
ECHO_BUILD = 'echo "build sees $BOT_TOKEN $CLI_SECRET $IMPORT_TOKEN"; printf "%s\\n" "$DB_PASSWORD"'
ECHO_MIGRATION = 'echo "migrating with $CLI_SECRET"; echo "$IMPORT_TOKEN"'


class Hook:
    """A webhook receiver on loopback keeping every body it is sent."""

    def __init__(self) -> None:
        import http.server
        import threading

        bodies = self.bodies = []  # type: list[str]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                bodies.append(self.rfile.read(size).decode("latin-1"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def put(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.ok("PUT", path, json=body)


def cli(stack: dict[str, Any], *args: str) -> str:
    env = {
        **stack["env"],
        "PILOTHOUSE_URL": stack["server"].url,
        "PILOTHOUSE_TOKEN": stack["token"],
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pilothouse", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout + proc.stderr


@production_store
def test_refused_then_delivered_and_nothing_leaks(stack: dict[str, Any], db_url: str) -> None:
    ensure_master_key(stack["data_dir"] / "master.key")
    client: Client = stack["client"]
    client.setup_service(
        versions=("v1.0.0",),
        replicas=1,
        driver_config={"build_command": ECHO_BUILD, "migration_command": ECHO_MIGRATION},
    )
    put(
        client,
        "/environments/dev/requirements/BOT_TOKEN",
        {"rule": "regex", "args": {"pattern": r"\d+:[A-Za-z0-9_-]+"}},
    )
    put(client, "/environments/dev/requirements/WEBHOOK_URL", {"rule": "https_url"})
    put(
        client,
        "/environments/dev/requirements/LOG_LEVEL",
        {"rule": "one_of", "args": {"values": ["DEBUG", "INFO", "WARNING", "ERROR"]}},
    )
    put(client, "/environments/dev/vars/WEBHOOK_URL", {"value": "http://plain.example"})

    refused = client.wait(client.deploy("web", "v1.0.0")["id"])
    assert refused["status"] == "failed"
    assert refused["error_message"] == (
        "environment variables: BOT_TOKEN: is required; LOG_LEVEL: is required; "
        "WEBHOOK_URL: must be an https:// URL"
    )
    assert client.replicas("web", None) == []
    history = [h["to_status"] for h in client.ok("GET", f"/history/deployment/{refused['id']}")]
    assert history == ["pending", "failed"]

    put(client, "/environments/dev/vars/BOT_TOKEN", {"value": SECRET_TOKEN, "is_secret": True})
    put(client, "/environments/dev/vars/DB_PASSWORD", {"value": SECRET_PASSWORD, "is_secret": True})
    put(client, "/environments/dev/vars/WEBHOOK_URL", {"value": "https://hooks.example.com/x"})
    put(client, "/environments/dev/vars/LOG_LEVEL", {"value": "INFO"})
    put(client, "/environments/dev/vars/SAMPLE_PRINT_ENV", {"value": "1"})  # prints its env
    # the same kind of values through the CLI and a .env import
    assert "CLI_SECRET" in cli(
        stack, "vars", "set", f"CLI_SECRET={CLI_SECRET}", "--secret", "--env", "dev"
    )
    dotenv = stack["data_dir"].parent / "leak.env"
    dotenv.write_text(f"IMPORT_TOKEN={DOTENV_SECRET}\n")
    assert "applied" in cli(stack, "vars", "import", str(dotenv), "--env", "dev", "--yes")
    dotenv.unlink()
    client.ok("PATCH", "/environments/dev", json={"features": {"new-ui": True, "beta": False}})
    dep = client.wait(client.deploy("web", "v1.0.0")["id"])
    assert dep["status"] == "success", dep
    assert dep["migration_version"] == "********"
    replica = client.replicas("web")[0]
    port = replica["ports"]["http"]
    for key, value in (
        ("BOT_TOKEN", SECRET_TOKEN),
        ("DB_PASSWORD", SECRET_PASSWORD),
        ("LOG_LEVEL", "INFO"),
        ("FEATURE_NEW_UI", "true"),  # feature flags arrive as variables (seed 002)
        ("FEATURE_BETA", "false"),
    ):
        got = httpx.get(f"http://127.0.0.1:{port}/env/{key}").json()["sha256"]
        assert got == hashlib.sha256(value.encode()).hexdigest(), key
    # pilothouse's own secrets are not handed down
    assert (
        httpx.get(f"http://127.0.0.1:{port}/env/PILOTHOUSE_DATABASE_URL").json()["sha256"] is None
    )
    logs = client.ok("GET", f"/deployments/{dep['id']}/logs", params={"limit": 1000})["items"]
    assert any("env BOT_TOKEN=********" in line["message"] for line in logs), logs
    said = [line["message"] for line in logs]
    assert "build sees ******** ******** ********" in said, said
    assert "migrating with ********" in said

    # a viewer and an operator, granted the environment, read everything they may
    tokens = {"admin": stack["token"]}
    for role in ("viewer", "operator"):
        made = client.ok("POST", "/users", 201, json={"name": f"leak-{role}", "role": role})
        client.ok("POST", "/environments/dev/grants", 204, json={"user": f"leak-{role}"})
        tokens[role] = made["token"]["token"]
    hook = Hook()
    cli(
        stack,
        "channel",
        "add",
        "leakhook",
        "--kind",
        "webhook",
        "--url",
        hook.url,
        "--secret",
        "hook-signing-key-1",
    )
    cli(stack, "channel", "test", "leakhook")

    # -- every place a value could leak ----------------------------------------------------
    seen: list[str] = []
    for args in (
        ("vars", "list", "--env", "dev"),
        ("vars", "export", "--env", "dev"),
        ("vars", "history", "BOT_TOKEN", "--env", "dev"),
        ("vars", "check", "dev"),
        ("vars", "template", "--env", "dev", "-o", str(stack["data_dir"] / "t.env")),
        ("logs", dep["id"]),
        ("deployments", "show", dep["id"]),
        ("replicas", "web"),
        ("backup", "self"),
        ("deployments", "list"),
        ("deployments", "logs", dep["id"]),
        ("service", "show", "web"),
        ("env", "show", "dev"),
        ("history", "deployment", dep["id"]),
        ("channel", "list"),
        ("vars", "diff", "dev", "dev"),
        # error paths
        ("vars", "set", "CLI_SECRET=x", "--secret", "--env", "dev"),
        ("vars", "set", f"CLI_SECRET={CLI_SECRET}", "--env", "nope"),
        ("vars", "diff", "dev", "nope"),
        ("deploy", "web", "--version", "v9.9.9", "--no-wait"),
        ("logs", "00000000-0000-0000-0000-000000000000"),
    ):
        seen.append(cli(stack, *args))
    for token in tokens.values():
        seen += every_get_route(client, stack["server"].url, dep["id"], token)
    seen += hook.bodies
    assert hook.bodies, "the webhook channel received nothing"
    for file in Path(stack["data_dir"]).rglob("*"):
        if file.is_file() and file.name != "master.key":
            seen.append(file.read_bytes().decode("latin-1"))
    if db_url.startswith("postgresql"):
        dump = subprocess.run(
            ["pg_dump", "--data-only", str(sa.engine.make_url(db_url))],
            capture_output=True,
            text=True,
            check=True,
        )
        seen.append(dump.stdout)
    else:
        store = Path(str(sa.engine.make_url(db_url).database))
        for file in (store, Path(f"{store}-wal")):
            if file.exists():
                seen.append(file.read_bytes().decode("latin-1"))
    for sentinel in SENTINELS:
        hits = [i for i, text in enumerate(seen) if sentinel in text]
        assert hits == [], f"{sentinel!r} leaked into {[seen[i][:200] for i in hits]}"
    assert any("backups" in str(p) for p in Path(stack["data_dir"]).rglob("*.enc"))


def every_get_route(client: Client, base: str, deployment_id: str, token: str) -> list[str]:
    """The body of every GET route in the OpenAPI schema as `token` sees it, path parameters
    filled with the records this test made (secrets stay masked without ?reveal)."""
    artifact = client.ok("GET", "/artifacts", params={"service": "web"})[0]["id"]
    backup = client.ok("GET", "/backups")[0]["id"]
    schema = httpx.get(f"{base}/openapi.json").json()
    fill = {
        "artifact_id": artifact,
        "deployment_id": deployment_id,
        "env": "dev",
        "key": "BOT_TOKEN",
        "entity_type": "deployment",
        "name": "web",
        "kind": "status",
    }
    refs = {
        "/api/v1/backup-targets/": "pilothouse",
        "/api/v1/backups/": backup,
        "/api/v1/channels/": "no-such-channel",
        "/api/v1/environments/": "dev",
        "/api/v1/history/": deployment_id,
        "/api/v1/services/": "web",
        "/api/v1/nodes/": "local",
        "/api/v1/certificates/": "no-such.example.test",
        "/api/v1/domains/": "no-such.example.test",
    }
    bodies = []
    for path, operations in sorted(schema["paths"].items()):
        if "get" not in operations:
            continue
        url = path
        for name, value in fill.items():
            url = url.replace("{" + name + "}", value)
        if "{ref}" in url:
            url = url.replace("{ref}", next(v for k, v in refs.items() if path.startswith(k)))
        params = {"left": "dev", "right": "dev"} if path.endswith("vars-diff") else {}
        response = httpx.get(
            f"{base}{url}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code < 500, (url, response.text)
        bodies.append(response.text)
    assert len(bodies) >= 30
    return bodies
