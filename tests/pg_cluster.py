"""A throwaway PostgreSQL cluster that a test can stop and start (the store going away).

initdb and postgres refuse to run as root, so under root the cluster belongs to a dedicated
system user (created once with useradd) and lives in a private temporary directory owned by it;
its Unix socket goes there too (-k). The cluster listens on 127.0.0.1 on a free port, with trust
authentication. `close()` always stops the server (fast, then immediate, then SIGKILL of the
postmaster) and removes the directory, whatever state the test left it in; clusters older than two
hours (left by a killed test run) are swept when the next one is made.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

USER = "pilothouse-pgtest"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
        return
    except KeyError:
        pass
    proc = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
        capture_output=True,
        text=True,
    )
    # Another test process may have created it at the same time.
    if proc.returncode != 0:
        pwd.getpwnam(USER)


PREFIX = "ph-pgcluster-"
STALE_AFTER = 2 * 3600.0


def _sweep(bin_dir: Path, as_root: bool) -> None:
    """Stop and remove clusters left by a test run that was killed (older than two hours)."""
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime < STALE_AFTER:
                continue
            argv = [str(bin_dir / "pg_ctl"), "-D", str(path / "data"), "-m", "immediate", "stop"]
            if as_root:
                argv = ["runuser", "-u", USER, "--", *argv]
            subprocess.run(argv, capture_output=True, timeout=60)
            shutil.rmtree(path, ignore_errors=True)


class Cluster:
    """One PostgreSQL cluster in a temporary directory: start(), stop(), close()."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            reason = "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed"
            if os.environ.get("PILOTHOUSE_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"PILOTHOUSE_REQUIRE_POSTGRES=1 but {reason}")
            pytest.skip(reason)
        self.bin = bin_dir
        self.as_root = os.geteuid() == 0
        if self.as_root:
            _ensure_user()
        _sweep(bin_dir, self.as_root)
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        try:
            if self.as_root:
                entry = pwd.getpwnam(USER)
                os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str = "pilothouse") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin / tool), *args]
        if self.as_root:
            argv = ["runuser", "-u", USER, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{tool} failed: {proc.stderr.strip()[-1500:]}")
        return proc

    def start(self) -> None:
        """Start the server and wait until it accepts connections (same port every time)."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        proc = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t",
            "60", "start", check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = self.log.read_text()[-1500:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {proc.stderr.strip()} {tail}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: sessions are cut, new connections are refused."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def create_database(self, name: str = "pilothouse") -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop whatever runs and remove the directory (never raises)."""
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("fast")
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(Exception):
            if pid_file.exists():
                pid = int(pid_file.read_text().splitlines()[0])
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A running throwaway cluster with an empty `pilothouse` database; removed afterwards."""
    cluster = Cluster()
    try:
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        cluster.close()
