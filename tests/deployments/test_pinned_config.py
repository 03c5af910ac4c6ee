"""Release = code + config (issue 13.1), with real processes and pilothouse as a subprocess, on
both stores: each deployment pins the variable versions it delivered; a rollback delivers the
pinned versions of the release it returns to; a replica restarted after a crash gets its own
release's values, never today's; `deployments show`, `pilothouse diff` and the API list names
and versions, never values."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx

from pilothouse.setup import ensure_master_key
from tests.conftest import one_store
from tests.engine_support import Client

SECRETS = ("sntl-PIN-one-4f1a", "sntl-PIN-two-8b2c", "sntl-PIN-three-d3e9")
PLAIN = ("plain-PIN-one-11", "plain-PIN-two-22", "plain-PIN-three-33")
SENTINELS = ("sntl-PIN", "plain-PIN")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def seen(replica: dict[str, Any], key: str) -> str | None:
    port = replica["ports"]["http"]
    digest: str | None = httpx.get(f"http://127.0.0.1:{port}/env/{key}", timeout=5).json()["sha256"]
    return digest


def set_vars(client: Client, n: int) -> None:
    """X=n+1, the secret API_SECRET and the plain LABEL at their n-th value."""
    client.ok("PUT", "/environments/dev/vars/X", json={"value": str(n + 1)})
    client.ok("PUT", "/environments/dev/vars/API_SECRET", json={"value": SECRETS[n]})
    client.ok("PUT", "/environments/dev/vars/LABEL", json={"value": PLAIN[n], "plain": True})


def expect(replicas: list[dict[str, Any]], n: int) -> None:
    assert replicas
    for replica in replicas:
        assert seen(replica, "X") == sha(str(n + 1)), (replica["id"], n)
        assert seen(replica, "API_SECRET") == sha(SECRETS[n])
        assert seen(replica, "LABEL") == sha(PLAIN[n])


def cli(stack: dict[str, Any], *args: str) -> str:
    env = {
        **stack["env"],
        "PILOTHOUSE_URL": stack["server"].url,
        "PILOTHOUSE_TOKEN": stack["token"],
        "COLUMNS": "200",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pilothouse", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@one_store
def test_rollback_and_crash_restart_deliver_pinned_values(stack: dict[str, Any]) -> None:
    ensure_master_key(stack["data_dir"] / "master.key")
    client: Client = stack["client"]
    client.setup_service(replicas=2)
    set_vars(client, 0)
    d1 = client.wait(client.deploy("web", "v1.0.0")["id"])
    assert d1["status"] == "success", d1
    expect(client.replicas("web"), 0)

    set_vars(client, 1)
    d2 = client.wait(client.deploy("web", "v2.0.0")["id"])
    assert d2["status"] == "success", d2
    expect(client.replicas("web"), 1)

    # X changes to 3 after v2 went live; a crashed v2 replica comes back with v2's values
    set_vars(client, 2)
    victim = client.replicas("web")[0]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        now = {r["id"]: r for r in client.replicas("web", None)}[victim["id"]]
        if now["status"] == "running" and now["restart_count"] >= 1:
            break
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    assert now["pid"] != victim["pid"] and now["version"] == "v2.0.0"
    expect([now], 1)
    expect(client.replicas("web"), 1)  # the replicas of v2 did not drift apart

    # the rollback returns to v1's code and v1's config (pinned versions, not today's)
    rollback = client.ok("POST", "/services/web/rollback", 201, json={})
    back = client.wait(rollback["id"])
    assert back["status"] == "success", back
    live = client.replicas("web")
    assert {r["version"] for r in live} == {"v1.0.0"}
    expect(live, 0)
    config = client.ok("GET", f"/deployments/{rollback['id'][:8]}/config")
    assert config["pinned"] and config["copied_from"] == d1["id"]
    assert {v["key"]: v["version"] for v in config["variables"]} == {
        "API_SECRET": "v1",
        "LABEL": "v1",
        "X": "v1",
    }

    # a scale of the rolled-back release starts its new replica with the same pinned values
    client.ok("POST", "/services/web/scale", json={"target_replicas": 3})
    scale = client.ok("GET", "/deployments", params={"service": "web", "limit": 1})["items"][0]
    assert scale["event_type"] == "scale"
    assert client.wait(scale["id"])["status"] == "success"
    expect(client.replicas("web"), 0)

    # what the API and the CLI show: names and versions, never values
    d1_config = client.ok("GET", f"/deployments/{d1['id']}/config")
    assert [(v["key"], v["source"], v["version"], v["secret"]) for v in d1_config["variables"]] == [
        ("API_SECRET", "environment", "v1", True),
        ("LABEL", "environment", "v1", False),
        ("X", "environment", "v1", False),
    ]
    assert d1_config["driver_settings"]["driver"] == "process"
    diff = client.ok("GET", f"/deployments/{d1['id'][:8]}/diff/{d2['id'][:10]}")
    assert diff["artifact_changed"] is True
    assert diff["from_release"]["version"] == "v1.0.0"
    assert diff["to_release"]["version"] == "v2.0.0"
    changes = diff["variables"]
    assert [(c["key"], c["change"], c["version_from"], c["version_to"]) for c in changes] == [
        ("API_SECRET", "changed", "v1", "v2"),
        ("LABEL", "changed", "v1", "v2"),
        ("X", "changed", "v1", "v2"),
    ]
    same = client.ok("GET", f"/deployments/{d1['id']}/diff/{rollback['id']}")
    assert same["variables"] == [] and same["artifact_changed"] is False

    shown = cli(stack, "deployments", "show", d2["id"][:8])
    assert "config: 3 variable(s) pinned" in shown
    assert "API_SECRET" in shown and "v2" in shown
    diffed = cli(stack, "diff", d1["id"][:8], d2["id"][:8])
    assert "artifact: v1.0.0 -> v2.0.0" in diffed
    assert "~ X  v1 (environment) -> v2 (environment)" in diffed
    assert "~ API_SECRET  v1 (environment) -> v2 (environment)  secret" in diffed
    as_json = cli(stack, "diff", d2["id"][:8], rollback["id"][:8], "--json")
    show_json = cli(stack, "deployments", "show", rollback["id"][:8], "--json")
    api_bodies = [
        client.http.get(f"/deployments/{d}/config").text for d in (d1["id"], d2["id"], back["id"])
    ] + [client.http.get(f"/deployments/{d2['id']}/diff/{back['id']}").text]
    for text in (shown, diffed, as_json, show_json, *api_bodies):
        for sentinel in SENTINELS:
            assert sentinel not in text
