"""Test hosts: network namespaces on this machine, each with its own sshd on a veth address.

A host is a network namespace `phnsK` with a veth pair: `phvKa` stays here with 198.18.K.1/24
(or 198.19.K-256.1/24), `phvKb` moves into the namespace with .2/24. Inside, an sshd of its own
(`/usr/sbin/sshd -D -e -f CONFIG`) listens on port 22 of .2, with its own ed25519 host key, root
login by key only (`PermitRootLogin prohibit-password`), the test client key as the only
authorized key, no PAM. The namespaces share this machine's file system: python3 and podman
are there too.

Use the `netns_hosts` fixture (tests/nodes/conftest.py imports it; another test package imports
it the same way): `hosts = netns_hosts(3)` gives three `Host`s, each with `address`,
`host_key` (its OpenSSH public key line), `fingerprint` (SHA256:...), `access()` (a
`NodeAccess` with the client key) and `cut()`/`restore()` (the host-side link down/up, a host
failure), `stop_sshd()`/`start_sshd()`. `hosts.private_key` is the client key (OpenSSH PEM).

Every K is allocated under a file lock, so parallel test workers (xdist) and other sessions on
this machine never share one; everything is removed after the test (sshd killed, namespace and
link deleted), and what a killed run left behind (its owner pid is gone) is swept on the next
allocation. Without root, `ip`, `sshd` or `ssh-keygen` the tests skip with the reason;
PILOTHOUSE_REQUIRE_POSTGRES=1 (CI) turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pilothouse.drivers.transport import NodeAccess

SSHD = "/usr/sbin/sshd"
STATE = Path(tempfile.gettempdir()) / "pilothouse-netns"
REQUIRED = os.environ.get("PILOTHOUSE_REQUIRE_POSTGRES") == "1"
#: The /24s handed out: K in [FIRST, LAST) (198.18.16.0/24 upwards; 198.19.x for K >= 256).
FIRST, LAST = 16, 512


def unavailable() -> str | None:
    """Why namespace hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespace hosts need root"
    for tool in ("ip", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"network namespace hosts need `{tool}` (iproute2, openssh-client)"
    if not os.access(SSHD, os.X_OK):
        return f"network namespace hosts need {SSHD} (openssh-server)"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


def subnet(k: int) -> str:
    """The first three octets of host K's /24."""
    return f"198.18.{k}" if k < 256 else f"198.19.{k - 256}"


def _netns_pids(ns: str) -> list[int]:
    done = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in done.stdout.split() if p.strip().isdigit()]


def _kill_all(ns: str) -> None:
    for _ in range(50):
        pids = _netns_pids(ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _remove(k: int) -> None:
    ns = f"phns{k}"
    if Path("/run/netns", ns).exists():
        _kill_all(ns)
        _ip("netns", "del", ns, check=False)
    _ip("link", "del", f"phv{k}a", check=False)
    (STATE / f"{k}.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _allocate(count: int) -> list[int]:
    """Claim `count` free K (sweeping those whose owner died), under a machine-wide lock."""
    STATE.mkdir(exist_ok=True)
    with open(STATE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for owner in STATE.glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                if not _alive(int(owner.read_text().strip() or 0)):
                    _remove(int(owner.stem))
        in_use = _ip("-o", "-4", "addr", "show").stdout
        taken: list[int] = []
        for k in range(FIRST, LAST):
            if len(taken) == count:
                break
            if (
                (STATE / f"{k}.pid").exists()
                or Path("/run/netns", f"phns{k}").exists()
                or f" {subnet(k)}." in in_use
            ):
                continue
            (STATE / f"{k}.pid").write_text(str(os.getpid()))
            taken.append(k)
        if len(taken) < count:
            for k in taken:
                (STATE / f"{k}.pid").unlink(missing_ok=True)
            raise RuntimeError("no free 198.18.0.0/15 subnet for a test host")
        return taken


@dataclass
class Host:
    """One namespace host with its sshd."""

    k: int
    name: str
    folder: Path
    private_key: str = field(repr=False)
    host_key: str = ""
    fingerprint: str = ""
    sshd: subprocess.Popen[bytes] | None = None

    @property
    def netns(self) -> str:
        return f"phns{self.k}"

    @property
    def veth(self) -> str:
        """The host-side end of the link (down: the host is cut off)."""
        return f"phv{self.k}a"

    @property
    def address(self) -> str:
        return f"{subnet(self.k)}.2"

    port: int = 22

    def access(self, name: str | None = None, *, host_key: str | None = None) -> NodeAccess:
        """How pilothouse reaches this host as root with the test key."""
        return NodeAccess(
            id=uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.netns}.{os.getpid()}"),
            name=name or self.name,
            kind="ssh",
            address=self.address,
            ssh_user="root",
            ssh_port=self.port,
            host_key=host_key or self.host_key,
            private_key=self.private_key,
        )

    def exec(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (not over SSH)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cut(self) -> None:
        """Take the host-side link down: the host stops answering (no reset, no refusal)."""
        _ip("link", "set", self.veth, "down")

    def restore(self) -> None:
        _ip("link", "set", self.veth, "up")

    def start_sshd(self) -> None:
        self.sshd = subprocess.Popen(
            [
                # nsenter, not `ip netns exec`: that one mounts a fresh /sys for the namespace,
                # without the cgroup file systems podman (runc) needs to start containers.
                "nsenter",
                f"--net=/run/netns/{self.netns}",
                SSHD,
                "-D",
                "-e",
                "-f",
                str(self.folder / "sshd_config"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "sshd.log", "ab"),  # noqa: SIM115 (the child keeps it)
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if self.sshd.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "sshd.log").read_text(errors="replace")[-800:]
                raise RuntimeError(f"sshd in {self.netns} did not start: {log}")
            time.sleep(0.05)

    def set_max_sessions(self, count: int) -> None:
        """Restart sshd with `MaxSessions count` (64 by default: every test host's)."""
        config = self.folder / "sshd_config"
        lines = [
            f"MaxSessions {count}" if line.startswith("MaxSessions ") else line
            for line in config.read_text().splitlines()
        ]
        config.write_text("\n".join(lines) + "\n")
        self.stop_sshd()
        self.start_sshd()

    def stop_sshd(self) -> None:
        """Kill every process in the namespace: sshd and every session it serves."""
        _kill_all(self.netns)
        if self.sshd is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.sshd.wait(timeout=5)
            self.sshd = None


SSHD_CONFIG = """\
Port {port}
ListenAddress {address}
HostKey {folder}/ssh_host_ed25519_key
PidFile {folder}/sshd.pid
AuthorizedKeysFile {folder}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
MaxSessions 64
MaxStartups 64
LogLevel INFO
"""


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=20,
    )


def fingerprint_of(pub: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
        check=True,
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout
    return out.split()[1]


class Hosts(list[Host]):
    """The hosts of one test, and the client key that logs in to all of them."""

    def __init__(self) -> None:
        super().__init__()
        self.private_key = ""
        self.allocated: list[int] = []


def _create(hosts: Hosts, count: int, folder: Path) -> None:
    client = folder / "client_key"
    _keygen(client)
    hosts.private_key = client.read_text()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    hosts.allocated = _allocate(count)
    for index, k in enumerate(hosts.allocated, start=1):
        host_dir = folder / f"h{index}"
        host_dir.mkdir()
        host = Host(k=k, name=f"h{index}", folder=host_dir, private_key=hosts.private_key)
        hosts.append(host)
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", f"phv{k}b")
        _ip("link", "set", f"phv{k}b", "netns", host.netns)
        _ip("addr", "add", f"{subnet(k)}.1/24", "dev", host.veth)
        _ip("link", "set", host.veth, "up")
        for argv in (
            ("addr", "add", f"{host.address}/24", "dev", f"phv{k}b"),
            ("link", "set", f"phv{k}b", "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("-n", host.netns, *argv)
        _keygen(host_dir / "ssh_host_ed25519_key")
        pub = host_dir / "ssh_host_ed25519_key.pub"
        host.host_key = " ".join(pub.read_text().split()[:2])
        host.fingerprint = fingerprint_of(pub)
        shutil.copy(f"{client}.pub", host_dir / "authorized_keys")
        (host_dir / "sshd_config").write_text(
            SSHD_CONFIG.format(port=host.port, address=host.address, folder=host_dir)
        )
        host.start_sshd()


@contextlib.contextmanager
def namespace_hosts(count: int) -> Iterator[Hosts]:
    """`count` fresh hosts, removed afterwards whatever happened."""
    reason = unavailable()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"PILOTHOUSE_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="pilothouse-hosts-"))
    hosts = Hosts()
    try:
        _create(hosts, count, folder)
        yield hosts
    finally:
        for host in hosts:
            with contextlib.suppress(Exception):
                host.stop_sshd()
        for k in hosts.allocated:
            _remove(k)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def netns_hosts() -> Iterator[Callable[[int], Hosts]]:
    """A factory: `netns_hosts(3)` makes three namespace hosts for this test (at most once)."""
    with contextlib.ExitStack() as stack:

        def make(count: int = 3) -> Hosts:
            return stack.enter_context(namespace_hosts(count))

        yield make
