"""The nginx router: once set_backends returns, every new connection reaches the new backends.

A reload is a signal: nginx's master reads the new configuration and replaces its workers a little
later. Until the old workers stop accepting, a request may still go to the old backends, so a
deployment could report success while traffic still went to the previous release.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from pilothouse.drivers.nginx import ErrorLog, NginxRouter, RouterError
from pilothouse.drivers.process import free_port


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.label.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[list[int]]:
    servers = []
    for label in ("a", "b"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
        server.label = label  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield [s.server_address[1] for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def test_new_connections_reach_the_new_backends_once_set_backends_returns(
    tmp_path: Path, backends: list[int]
) -> None:
    router = NginxRouter(tmp_path / "nginx")
    port = free_port()
    a, b = backends

    async def flip() -> list[str]:
        seen = []
        try:
            await router.set_backends("svc", port, [a])
            for round_ in range(12):
                want = b if round_ % 2 == 0 else a
                await router.set_backends("svc", port, [want])
                async with httpx.AsyncClient() as client:
                    answer = (await client.get(f"http://127.0.0.1:{port}/")).text
                seen.append(f"{'b' if want == b else 'a'}={answer}")
        finally:
            await router.stop()
        return seen

    seen = asyncio.run(flip())
    assert all(pair[0] == pair[2] for pair in seen), seen


def test_a_configuration_nginx_refuses_fails_the_change_and_the_old_one_keeps_serving(
    tmp_path: Path, backends: list[int]
) -> None:
    """The reload is a signal to the master: when it refuses the new configuration, its
    `[emerg]` line fails the change (not a wait for workers that never come), and the workers
    of the previous configuration go on serving."""
    router = NginxRouter(tmp_path / "nginx")
    port = free_port()
    a, _ = backends

    async def refused() -> tuple[str, str]:
        try:
            await router.set_backends("svc", port, [a])
            (tmp_path / "nginx" / "services" / "broken.conf").write_text("upstream x { bogus; }\n")
            with pytest.raises(RouterError) as caught:
                await router.reload()
            async with httpx.AsyncClient() as client:
                answer = (await client.get(f"http://127.0.0.1:{port}/")).text
        finally:
            await router.stop()
        return str(caught.value), answer

    error, answer = asyncio.run(refused())
    assert 'unknown directive "bogus"' in error
    assert answer == "a"


def test_the_error_log_is_read_on_past_what_comes_before_the_refusal(tmp_path: Path) -> None:
    """Under load, nginx writes many `[error]` lines (upstreams that do not answer): the
    `[emerg]` line of a refused configuration is found however far past the mark it is."""
    log = tmp_path / "error.log"
    log.write_bytes(b"2026/12/02 [error] 1#1: old line\n")
    errors = ErrorLog(log)
    noise = b"".join(b"2026/12/02 [error] 1#1: upstream timed out %d\n" % i for i in range(4000))
    with open(log, "ab") as handle:
        handle.write(noise)  # > 64 KiB
    assert errors.emergency() is None
    with open(log, "ab") as handle:
        handle.write(noise + b'2026/12/02 [emerg] 1#1: unknown directive "bogus"\n')
    found = None
    for _ in range(10):
        found = found or errors.emergency()
    assert found is not None and 'unknown directive "bogus"' in found


def test_a_truncated_error_log_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_bytes(b"2026/12/02 [error] 1#1: a long line of the past\n" * 100)
    errors = ErrorLog(log)
    log.write_bytes(b'2026/12/02 [emerg] 1#1: unknown directive "bogus"\n')  # truncated
    found = errors.emergency()
    assert found is not None and 'unknown directive "bogus"' in found


def test_the_router_signals_only_its_own_master(tmp_path: Path) -> None:
    """A pid file left by a dead master whose pid another nginx now has (another router's
    here) names no master of this router: that nginx gets no signal, a reload says so."""
    ours = NginxRouter(tmp_path / "ours")
    other = NginxRouter(tmp_path / "other")

    async def scenario() -> tuple[int | None, int | None, str]:
        try:
            await ours.set_backends("svc", free_port(), [free_port()])
            await other.set_backends("svc", free_port(), [free_port()])
            theirs = other.pid()
            assert theirs is not None
            await ours.stop()
            (tmp_path / "ours" / "nginx.pid").write_text(f"{theirs}\n")
            with pytest.raises(RouterError) as caught:
                await ours._reload()
            return ours.pid(), other.pid(), str(caught.value)
        finally:
            (tmp_path / "ours" / "nginx.pid").unlink(missing_ok=True)
            await other.stop()

    mine, theirs, error = asyncio.run(scenario())
    assert mine is None and theirs is not None
    assert "not running" in error


def test_a_reload_with_a_dead_master_fails_at_once(tmp_path: Path) -> None:
    """The master is looked at before its workers are waited for (a dead one has none)."""
    router = NginxRouter(tmp_path / "nginx")

    async def scenario() -> str:
        try:
            await router.set_backends("svc", free_port(), [free_port()])
            master = router.pid()
            assert master is not None
            os.kill(master, signal.SIGKILL)
            while router.pid() is not None:
                await asyncio.sleep(0.02)
            with pytest.raises(RouterError) as caught:
                await router._reload()
            return str(caught.value)
        finally:
            router.kill()  # its orphaned workers
            await router.stop()

    assert "not running" in asyncio.run(scenario())


def test_a_stale_pid_file_never_stops_another_nginx(tmp_path: Path) -> None:
    """This router's pid file names another router's master (its own master died and the
    pid went to that one): setting backends starts this router's own nginx and the other one
    keeps running (it was killed with its group, as if it were this router's)."""
    ours = NginxRouter(tmp_path / "ours")
    other = NginxRouter(tmp_path / "other")

    async def scenario() -> tuple[bool, int | None, int | None]:
        try:
            await ours.set_backends("svc", free_port(), [free_port()])
            await other.set_backends("svc", free_port(), [free_port()])
            theirs = other.pid()
            assert theirs is not None
            await ours.stop()
            (tmp_path / "ours" / "nginx.pid").write_text(f"{theirs}\n")
            assert ours.processes() == []  # that group is not this router's
            await ours.set_backends("svc", free_port(), [free_port()])
            return psutil.pid_exists(theirs), other.pid(), ours.pid()
        finally:
            await ours.stop()
            await other.stop()

    alive, theirs, mine = asyncio.run(scenario())
    assert alive and theirs is not None
    assert mine is not None and mine != theirs
