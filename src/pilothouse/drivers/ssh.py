"""Commands on another host over SSH (asyncssh): the `ssh` kind of Transport.

- **One connection per host**, opened on first use and shared by every `run` and `start` (SSH
  multiplexes them as channels; the host's sshd `MaxSessions`, 10 by default, bounds how many
  run at once). Keepalives every `keepalive` seconds notice a host that went silent. A
  channel the host refuses (MaxSessions reached) fails that command only
  (TransportUnavailable naming MaxSessions); the connection and its other channels go on.
- **Reconnects with backoff.** When the connection drops or cannot be opened, the next call
  connects again; after `n` failed attempts in a row, calls within `min(cap, first * 2**(n-1))`
  seconds of the last failure fail at once with the last cause (TransportUnavailable), so a dead
  host is not hammered and callers are not held up.
- **The host key is checked against the trusted one only** (`NodeAccess.host_key`, an OpenSSH
  public key line); no known_hosts file is read. A different key is refused before any
  authentication, naming the node and both SHA256 fingerprints.
- **The client key** is `NodeAccess.private_key` (unsealed by the caller); no agent, no
  ~/.ssh/config, no password. No message ever carries a key.
- SSH runs a command line, so an argv is quoted with `shlex.join` (each argument arrives as
  given, whatever it holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Sequence
from typing import Any

import asyncssh

from pilothouse.drivers.transport import (
    Channel,
    Completed,
    NodeAccess,
    TransportKind,
    TransportUnavailable,
    register_kind,
)


class KeyRefused(TransportUnavailable):
    """The host refused the client key."""


class HostKeyMismatch(TransportUnavailable):
    """The host presented another key than the trusted one."""


CONNECT_TIMEOUT = 10.0
KEEPALIVE = 5.0
KEEPALIVE_COUNT = 3
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 15.0


def command_line(argv: Sequence[str]) -> str:
    """The command line sshd runs for `argv` (each argument quoted for the remote shell)."""
    if not argv:
        raise ValueError("a command needs at least its program")
    return shlex.join(argv)


def backoff(failures: int, *, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after `failures` failed connection attempts in a row (0 after none)."""
    if failures <= 0:
        return 0.0
    return float(min(cap, first * 2 ** min(failures - 1, 30)))


def public_key(line: str) -> asyncssh.SSHKey:
    """An OpenSSH public key line as a key; ValueError when it is not one."""
    try:
        return asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not an OpenSSH public key line: {exc}") from None


def fingerprint(line: str) -> str:
    """SHA256:... of an OpenSSH public key line (as `ssh-keygen -l` prints it)."""
    return str(public_key(line).get_fingerprint("sha256"))


def key_line(key: asyncssh.SSHKey) -> str:
    """`<algorithm> <base64>` (no comment)."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def private_key(text: str) -> asyncssh.SSHKey:
    """A client private key (OpenSSH or PEM, not passphrase-protected); ValueError saying why
    not, never quoting it."""
    try:
        return asyncssh.import_private_key(text)
    except Exception as exc:  # any input: whatever the parser trips on, it is not a usable key
        if isinstance(exc, asyncssh.KeyEncryptionError) or "assphrase" in str(exc):
            raise ValueError("is protected by a passphrase; give a key without one") from None
        raise ValueError("is not an OpenSSH or PEM private key") from None


#: asyncssh's reason when the connection closed while a channel opened (not the host's answer).
CONNECTION_CLOSED = "SSH connection closed"


def channel_refused(exc: asyncssh.ChannelOpenError, *, connection_closed: bool) -> bool:
    """Whether the host refused this one channel (sshd answers MaxSessions with "open failed"),
    as opposed to the connection having gone away while it opened."""
    return not connection_closed and exc.reason != CONNECTION_CLOSED


def describe(exc: BaseException, timeout: float = CONNECT_TIMEOUT) -> str:
    """A short cause for a failed connection or channel (never a key)."""
    if isinstance(exc, asyncssh.PermissionDenied):
        return "the client key was refused (authentication failed)"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return "host key not verified"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


async def fetch_host_key(
    host: str,
    port: int = 22,
    *,
    algorithm: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> str:
    """The host key `host:port` presents (OpenSSH line), without logging in;
    TransportUnavailable when it does not answer."""
    algs = [algorithm] if algorithm else ()
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(host, port, server_host_key_algs=algs or (), config=None),
            timeout,
        )
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise TransportUnavailable(
            f"{host}:{port} does not answer: {describe(exc, timeout)}"
        ) from None
    if key is None:
        raise TransportUnavailable(f"{host}:{port} presented no host key")
    return key_line(key)


class _Client(asyncssh.SSHClient):
    def __init__(self, transport: SSHTransport) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport._lost(self)


class _SSHChannel:
    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._process = process

    async def write(self, data: bytes) -> None:
        self._process.stdin.write(data)
        await self._process.stdin.drain()

    async def write_eof(self) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            self._process.stdin.write_eof()

    async def readline(self) -> bytes:
        try:
            line: bytes = await self._process.stdout.readline()
        except (OSError, asyncssh.Error, asyncio.IncompleteReadError):
            return b""
        return line

    async def wait(self) -> int | None:
        try:
            done = await self._process.wait(check=False)
        except (OSError, asyncssh.Error):
            return None
        if done.exit_status is None and done.exit_signal is None:
            return None  # the connection went away before the command ended
        return done.returncode

    def close(self) -> None:
        self._process.close()


class SSHTransport:
    """Commands on one host over one multiplexed SSH connection."""

    kind: TransportKind = "ssh"

    def __init__(
        self,
        access: NodeAccess,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        keepalive: float = KEEPALIVE,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        if access.kind != "ssh":
            raise ValueError(f"node {access.name} is reached by {access.kind!r}, not ssh")
        if not access.host_key or not access.private_key:
            raise TransportUnavailable(f"node {access.name}: no trusted host key or no client key")
        self.node = access.name
        self.address = access.address
        self._access = access
        try:
            self._trusted = public_key(access.host_key)
            self._client_key = private_key(access.private_key)
        except ValueError as exc:
            raise TransportUnavailable(f"node {access.name}: its key {exc}") from None
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.backoff_first = backoff_first
        self.backoff_cap = backoff_cap
        self._conn: asyncssh.SSHClientConnection | None = None
        self._client: _Client | None = None
        self._lock: asyncio.Lock | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""
        self.connects = 0  # connections opened so far (the tests count reconnects)

    def __repr__(self) -> str:
        return f"SSHTransport({self.node!r}, {self._where})"

    @property
    def _where(self) -> str:
        return f"{self._access.ssh_user}@{self.address}:{self._access.ssh_port}"

    def _lost(self, client: _Client) -> None:
        if client is self._client:
            self._conn = None
            self._client = None

    def _unavailable(self, cause: str) -> TransportUnavailable:
        return TransportUnavailable(f"node {self.node} ({self._where}): {cause}")

    def _failed(
        self, cause: str, kind: type[TransportUnavailable] = TransportUnavailable
    ) -> TransportUnavailable:
        self._failures += 1
        self._last_error = cause
        delay = backoff(self._failures, first=self.backoff_first, cap=self.backoff_cap)
        self._retry_at = asyncio.get_running_loop().time() + delay
        return kind(f"node {self.node} ({self._where}): {cause}")

    async def _mismatch(self) -> str:
        trusted = str(self._trusted.get_fingerprint("sha256"))
        try:
            line = await fetch_host_key(
                self.address,
                self._access.ssh_port,
                algorithm=self._trusted.get_algorithm(),
                timeout=self.connect_timeout,
            )
            presented = fingerprint(line)
        except TransportUnavailable:
            presented = "unknown (it stopped answering)"
        return (
            f"host key mismatch: it presents {presented}, the trusted key is {trusted} "
            "(a reinstalled host, or someone in between): check the host, then remove it "
            f"(pilothouse node remove {self.node}) and add it again (pilothouse node add) "
            "with the new key"
        )

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The host's connection, opened (or reopened) when there is none."""
        if self._conn is not None:
            return self._conn
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._conn is not None:
                return self._conn
            wait = self._retry_at - asyncio.get_running_loop().time()
            if self._failures and wait > 0:
                raise self._unavailable(f"{self._last_error} (next try in {wait:.1f} s)")
            client = _Client(self)
            try:
                conn, _ = await asyncio.wait_for(
                    asyncssh.create_connection(
                        lambda: client,
                        self.address,
                        self._access.ssh_port,
                        username=self._access.ssh_user,
                        known_hosts=([self._trusted], [], []),
                        client_keys=[self._client_key],
                        agent_path=None,
                        password=None,
                        kbdint_auth=False,
                        preferred_auth="publickey",
                        config=None,
                        keepalive_interval=self.keepalive,
                        keepalive_count_max=KEEPALIVE_COUNT,
                    ),
                    self.connect_timeout,
                )
            except asyncssh.HostKeyNotVerifiable:
                raise self._failed(await self._mismatch(), HostKeyMismatch) from None
            except asyncssh.PermissionDenied as exc:
                raise self._failed(describe(exc), KeyRefused) from None
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                raise self._failed(describe(exc, self.connect_timeout)) from None
            self._conn, self._client = conn, client
            self._failures = 0
            self.connects += 1
            return conn

    def _refused(self, exc: asyncssh.ChannelOpenError) -> TransportUnavailable:
        return self._unavailable(
            f"the host refused another session ({describe(exc)}): its sshd's MaxSessions "
            "(10 by default) is reached; each replica on it holds one, so raise MaxSessions in "
            "its sshd_config"
        )

    def _dropped(self, conn: asyncssh.SSHClientConnection, exc: BaseException) -> Exception:
        if self._conn is conn:
            self._conn = None
            self._client = None
            conn.abort()
        return self._unavailable(f"connection lost: {describe(exc)}")

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 30.0
    ) -> Completed:
        """Run a command to completion on the host."""
        line = command_line(argv)
        conn = await self.connection()
        try:
            done = await asyncio.wait_for(
                conn.run(line, input=input or b"", encoding=None, check=False), timeout
            )
        except TimeoutError:
            raise TimeoutError(f"node {self.node}: {argv[0]} ran past {timeout:g} s") from None
        except asyncssh.ChannelOpenError as exc:
            if not channel_refused(exc, connection_closed=conn.is_closed()):
                raise self._dropped(conn, exc) from None
            raise self._refused(exc) from None
        except (OSError, asyncssh.Error) as exc:
            raise self._dropped(conn, exc) from None
        if done.exit_status is None and done.exit_signal is None:
            raise self._dropped(conn, ConnectionError("the command's channel closed early"))
        return Completed(int(done.returncode or 0), _bytes(done.stdout), _bytes(done.stderr))

    async def start(self, argv: Sequence[str]) -> Channel:
        """Start a long-running command; its stderr is discarded."""
        line = command_line(argv)
        conn = await self.connection()
        try:
            process = await asyncio.wait_for(
                conn.create_process(line, encoding=None, stderr=asyncssh.DEVNULL),
                self.connect_timeout,
            )
        except TimeoutError:
            raise self._dropped(conn, TimeoutError()) from None
        except asyncssh.ChannelOpenError as exc:
            if not channel_refused(exc, connection_closed=conn.is_closed()):
                raise self._dropped(conn, exc) from None
            raise self._refused(exc) from None
        except (OSError, asyncssh.Error) as exc:
            raise self._dropped(conn, exc) from None
        return _SSHChannel(process)

    async def close(self) -> None:
        conn, self._conn, self._client = self._conn, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode()


register_kind("ssh", SSHTransport)
