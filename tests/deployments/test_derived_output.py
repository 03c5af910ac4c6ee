"""Everything derived from command output is scrubbed before it is stored: build and migration
output (scrubbed before it is cut to 4,000 characters), `migration_version`, log lines and
transition reasons posted through the API. A line longer than 64 KiB is stored cut, the
deployment does not fail with an internal error, and a failed command leaves no process behind."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import one_store
from tests.engine_support import CHILD_PYTHON, Client, alive

SECRET = "sntl-DRV-4f8e1c0b"
PY = CHILD_PYTHON


def everything_stored(client: Client, dep_id: str) -> str:
    dep = client.ok("GET", f"/deployments/{dep_id}")
    logs = client.ok("GET", f"/deployments/{dep_id}/logs", params={"limit": 10000})["items"]
    hist = client.ok("GET", f"/history/deployment/{dep_id}")
    return repr(dep) + repr(logs) + repr(hist)


@one_store
def test_command_output_and_posted_text_are_scrubbed(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    straddle = "import os; print('x' * 3990 + os.environ['APP_SECRET'])"
    client.setup_service(
        replicas=1,
        versions=("v1.0.0", "v2.0.0"),
        driver_config={
            "build_command": f'{PY} -c "{straddle}"; echo "token is $APP_SECRET"',
            "migration_command": 'echo applying; echo "$APP_SECRET"',
        },
    )
    client.ok("PUT", "/environments/dev/vars/APP_SECRET", json={"value": SECRET, "is_secret": True})
    dep = client.wait(client.deploy("web", "v1.0.0")["id"])
    assert dep["status"] == "success", dep
    assert dep["migration_applied"] is True
    assert dep["migration_version"] == "********"
    logs = client.ok("GET", f"/deployments/{dep['id']}/logs", params={"limit": 10000})["items"]
    assert any(line["message"] == "token is ********" for line in logs)
    cut = [line["message"] for line in logs if line["message"].startswith("xxxx")]
    assert len(cut) == 1 and len(cut[0]) <= 4000, [len(c) for c in cut]

    # Posted by an operator through the API: the same scrubbing before it is stored.
    client.ok(
        "POST",
        f"/deployments/{dep['id']}/logs",
        201,
        json={"message": f"posted {SECRET}", "metadata": {"note": f"a {SECRET} b", "n": 1}},
    )
    client.ok(
        "POST",
        f"/deployments/{dep['id']}/logs/batch",
        201,
        json={"lines": [{"message": f"batch {SECRET}"}]},
    )
    # (the worker's lease on a finished deployment runs out a moment after it ends)
    body = {"to": "rolled_back", "reason": f"why {SECRET}", "rollback_reason": f"because {SECRET}"}
    deadline = time.monotonic() + 15
    while (
        moved := client.http.post(f"/deployments/{dep['id']}/transition", json=body)
    ).status_code == 409:
        assert time.monotonic() < deadline, moved.text
        time.sleep(0.2)
    assert moved.status_code == 200, moved.text
    stored = everything_stored(client, dep["id"])
    assert "sntl-" not in stored, stored[stored.find("sntl-") - 100 :][:300]
    assert "posted ********" in stored and "why ********" in stored


@one_store
def test_a_line_over_64_kib_and_a_failed_command_leave_nothing_behind(
    stack: dict[str, Any],
) -> None:
    client: Client = stack["client"]
    client.setup_service(
        replicas=1,
        versions=("v1.0.0",),
        driver_config={
            # a 70,000-character line, then a background child that outlives the shell, then exit 3
            "build_command": (
                f"{PY} -c \"print('y' * 70000)\"; sleep 600 >/dev/null 2>&1 & echo bg=$!; exit 3"
            ),
        },
    )
    dep = client.wait(client.deploy("web", "v1.0.0")["id"])
    assert dep["status"] == "failed"
    assert dep["error_message"] == "build command exited with status 3", dep["error_message"]
    logs = client.ok("GET", f"/deployments/{dep['id']}/logs", params={"limit": 10000})["items"]
    long = [line["message"] for line in logs if line["message"].startswith("yyyy")]
    assert len(long) == 1 and len(long[0]) <= 4000
    pid = int(next(line["message"] for line in logs if line["message"].startswith("bg="))[3:])
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, "the failed command's process group must be killed"
        time.sleep(0.05)
