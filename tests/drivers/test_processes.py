"""No process is left behind (issue 12.10): stopping the router, a server or a test leaves no
process it started. Counted with psutil before, during and after a full rollout-and-stop cycle."""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from pilothouse.drivers.nginx import NginxRouter
from tests.conftest import free_port, one_store
from tests.engine_support import Client, Load, alive, cleanup, started_by

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def _names(procs: list[psutil.Process]) -> list[str]:
    out = []
    for proc in procs:
        try:
            out.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            continue
    return out


def _nginx(procs: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for proc in procs:
        try:
            if proc.name().startswith("nginx"):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _pids(procs: list[psutil.Process]) -> set[int]:
    return {p.pid for p in procs}


def _settled(data_dir: Path, expected: set[int] | None = None) -> list[psutil.Process]:
    """What is left once exiting processes are gone (bounded wait, no timing asserted)."""
    deadline = time.monotonic() + 20
    while True:
        left = started_by(data_dir)
        if {p.pid for p in left} == (expected or set()) or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_stopping_the_router_leaves_no_nginx_process(tmp_path: Path) -> None:
    """A worker still holding a keep-alive connection is waited for, then nothing is left."""
    upstream = free_port()
    port = free_port()
    router = NginxRouter(tmp_path / "nginx")

    async def cycle() -> list[str]:
        await router.set_backends("svc", port, [upstream])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")  # 502 (nothing upstream), the connection stays open
        conn.getresponse().read()
        await router.set_backends("svc", port, [upstream, free_port()])  # a reload
        running = _names(_nginx(started_by(tmp_path)))
        await router.stop()
        conn.close()
        return running

    running = asyncio.run(cycle())
    assert len(running) >= 2, running
    assert started_by(tmp_path) == [], _names(started_by(tmp_path))
    assert router.pid() is None


def test_a_killed_nginx_master_leaves_no_orphaned_worker(tmp_path: Path) -> None:
    """nginx's workers outlive a master killed with SIGKILL (they hold the router's ports).
    Starting the router again, or stopping it, takes them too."""
    port = free_port()
    router = NginxRouter(tmp_path / "nginx")

    async def crash_and_recover() -> tuple[list[str], set[int], set[int]]:
        await router.set_backends("svc", port, [free_port()])
        master = router.pid()
        assert master is not None
        deadline = time.monotonic() + 10
        while len(_nginx(started_by(tmp_path))) < 2:  # the master forks its worker
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(master, signal.SIGKILL)
        orphans = _settled(tmp_path, _pids(started_by(tmp_path)) - {master})
        names = _names(_nginx(orphans))
        # Orphaned workers are still this router's: not a conflict for the service they serve.
        assert router.port_holder("svc", port) is None
        assert router.port_holder("other", port) == "pilothouse's router (svc)"
        await router.set_backends("svc", port, [free_port()])  # comes back on the same port
        restarted = _pids(started_by(tmp_path))
        await router.stop()
        return names, _pids(orphans), restarted

    names, orphans, restarted = asyncio.run(crash_and_recover())
    assert orphans and len(names) == len(orphans), names
    assert not orphans & restarted, "the orphaned workers were taken before nginx started again"
    assert started_by(tmp_path) == [], _names(started_by(tmp_path))


@one_store
def test_no_process_is_left_after_a_rollout_and_stop(stack: dict[str, Any]) -> None:
    client: Client = stack["client"]
    data_dir: Path = stack["data_dir"]
    server = stack["server"]
    before = started_by(data_dir)
    assert {p.pid for p in before} == {server.proc.pid}, _names(before)

    port = free_port()
    client.setup_service(replicas=2, router_port=port)
    assert client.wait(client.deploy("web", "v1.0.0")["id"])["status"] == "success"
    with Load(port) as load:  # keep-alive clients through every reload
        time.sleep(0.3)
        assert client.wait(client.deploy("web", "v2.0.0")["id"])["status"] == "success"
    assert load.result.failed == 0, load.result
    during = started_by(data_dir)
    nginx = _nginx(during)
    assert len(nginx) >= 2, f"the count sees nginx's master and worker: {_names(during)}"
    replicas = [r["pid"] for r in client.replicas("web")]
    assert len(replicas) == 2 and {p.pid for p in during} >= set(replicas)

    # Stopping, the ordinary way: the service is deleted (replicas and route go), the server
    # stops. pilothouse's nginx stops with the last route it served.
    client.ok("DELETE", "/services/web", 204)
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in replicas) or any(p.is_running() for p in nginx):
        assert time.monotonic() < deadline, _names(started_by(data_dir))
        time.sleep(0.2)
    server.stop()
    left = _settled(data_dir)
    assert left == [], f"left behind: {_names(left)}"

    # Stopping the way a test or a benchmark does: the server stops with a service live, then
    # cleanup() takes every process it started, nginx's workers included.
    second = stack["spawn"]()
    client = Client(second.url, stack["token"])
    client.setup_service("api", replicas=1, router_port=port, versions=("v1.0.0",))
    assert client.wait(client.deploy("api", "v1.0.0")["id"])["status"] == "success"
    with Load(port):
        time.sleep(0.3)
    second.stop()
    assert _nginx(started_by(data_dir)), "nginx still serves the live service"
    cleanup(data_dir)
    left = _settled(data_dir)
    assert left == [], f"left behind: {_names(left)}"
