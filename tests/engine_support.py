"""Helpers for release-engine tests: pilothouse as a subprocess, the sample app, a load client."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def _readable_copy(source: Path) -> Path:
    """A copy of `source` the unprivileged run-as user can read: replicas run as that user
    when the tests run as root, and neither the checkout nor pytest's tmp_path may be open."""
    folder = Path(tempfile.mkdtemp(prefix="pilothouse-sample-"))
    atexit.register(shutil.rmtree, folder, True)
    folder.chmod(0o755)
    target = folder / source.name
    shutil.copy(source, target)
    target.chmod(0o644)
    return target


#: A Python the run-as user can execute (the test runner's may live under a private home).
CHILD_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
SAMPLE_APP = _readable_copy(ROOT / "examples" / "sampleapp.py")
SAMPLE_COMMAND = f"{CHILD_PYTHON} {SAMPLE_APP} --port {{port}}"
SHA = "c" * 40
TERMINAL = {"success", "failed", "rolled_back"}


class ServerProcess:
    """`pilothouse serve` in a subprocess, so a test can kill -9 it."""

    def __init__(self, env: dict[str, str], role: str = "all") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.role = role
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(env["PILOTHOUSE_DATA_DIR"]) / f"serve-{self.port}.log"

    def start(self) -> ServerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pilothouse",
                    "serve",
                    "--port",
                    str(self.port),
                    "--no-access-log",
                    "--role",
                    self.role,
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # Generous: on a loaded 2-core machine `serve` has been seen taking 40 s to answer.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("serve did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def deploy(self, service: str, version: str, **extra: Any) -> dict[str, Any]:
        body = {"service": service, "version": version, **extra}
        return self.ok("POST", "/deployments", 201, json=body)  # type: ignore[no-any-return]

    def wait(
        self, deployment_id: str, statuses: set[str] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            dep = self.ok("GET", f"/deployments/{deployment_id}")
            if dep["status"] in statuses:
                return dep  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"deployment stuck in {dep['status']}"
            time.sleep(0.1)

    def replicas(self, service: str, status: str | None = "running") -> list[dict[str, Any]]:
        rows = self.ok("GET", f"/services/{service}/replicas")
        return [r for r in rows if status is None or r["status"] == status]

    def setup_service(
        self,
        name: str = "web",
        *,
        replicas: int = 3,
        router_port: int | None = None,
        versions: tuple[str, ...] = ("v1.0.0", "v2.0.0"),
        driver: str = "process",
        command: str | None = SAMPLE_COMMAND,
        driver_config: dict[str, Any] | None = None,
        timeout: float = 3.0,
        env_name: str = "dev",
    ) -> dict[str, Any]:
        if self.http.get(f"/environments/{env_name}").status_code == 404:
            self.ok("POST", "/environments", 201, json={"name": env_name, "driver": driver})
        config = dict(driver_config or {})
        if router_port:
            config.update(router="nginx", router_port=router_port)
        svc = self.ok(
            "POST",
            "/services",
            201,
            json={
                "environment": env_name,
                "name": name,
                "command": command,
                "target_replicas": replicas,
                "driver_config": config,
                "health_check": {"path": "/health", "timeout": timeout, "interval": 0.05},
            },
        )
        for version in versions:
            self.ok(
                "POST",
                "/artifacts",
                201,
                json={"service": svc["id"], "version": version, "commit_sha": SHA},
            )
        return svc  # type: ignore[no-any-return]


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    stale_retried: int = 0
    errors: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)


class Load:
    """Clients sending GET / through the router the whole time.

    Keep-alive connections, and like browsers and most HTTP clients, one retry of the
    (idempotent) request when a reused idle connection was closed by the server before any
    response: nginx closes idle keep-alive connections at every reload. Anything else fails.
    """

    def __init__(self, port: int, threads: int = 4, rate: float | None = None) -> None:
        """`rate`: requests per second per client at the most (None: as fast as answered)."""
        self.port = port
        if rate is not None and rate < 0:
            raise ValueError(f"rate must be 0 or more requests a second, not {rate}")
        self.interval = 1.0 / rate if rate else 0.0
        self.result = LoadResult()
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _once(self, conn: http.client.HTTPConnection) -> str:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:100]!r}")
        return body.split(b'"version": "')[1].split(b'"')[0].decode()

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        next_at = time.monotonic() - self.interval  # the first request goes at once
        while not self.stop_event.is_set():
            if self.interval:
                # Paced: one request per interval, no burst to catch up after a slow answer.
                next_at = max(next_at + self.interval, time.monotonic())
                if self.stop_event.wait(max(0.0, next_at - time.monotonic())):
                    break
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                version = self._once(conn)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if not reused:
                    self._fail(exc)
                    continue
                with self.lock:
                    self.result.stale_retried += 1
                try:
                    version = self._once(conn)
                except Exception as exc2:
                    self._fail(exc2)
                    conn.close()
                    conn = None
                    continue
            except Exception as exc:
                self._fail(exc)
                conn.close()
                conn = None
                continue
            with self.lock:
                self.result.ok += 1
                self.result.versions[version] = self.result.versions.get(version, 0) + 1

    def _fail(self, exc: BaseException) -> None:
        with self.lock:
            self.result.failed += 1
            if len(self.result.errors) < 10:
                self.result.errors.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(15)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def started_by(data_dir: Path) -> list[psutil.Process]:
    """The live processes a test's pilothouse started: those marked by data_dir in their
    environment or command line, or holding a file or their working directory under it (an
    nginx worker: its error log), and their descendants. Never this process or its parents."""
    marker = str(data_dir)
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "environ", "cwd", "status"]):
        try:
            if proc.pid in mine or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            env = proc.info.get("environ") or {}
            cmd = " ".join(proc.info.get("cmdline") or [])
            hit = env.get("PILOTHOUSE_TEST_MARK") == marker or marker in cmd
            hit = hit or (proc.info.get("cwd") or "").startswith(marker)
            hit = hit or any(f.path.startswith(marker) for f in proc.open_files())
            if hit:
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return [p for p in found.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def cleanup(data_dir: Path) -> None:
    """Kill every process a test left behind under data_dir: replicas, their relays, and
    nginx's master and workers (an orphaned worker is found by the error log it holds)."""
    from pilothouse.drivers.nginx import NginxRouter

    NginxRouter(data_dir / "nginx").kill()
    for proc in started_by(data_dir):
        with contextlib.suppress(psutil.Error):
            proc.kill()
