"""The ssh transport against real sshd's in network namespaces: run with stdin and exit
status, a long-running command with its stdin and stdout, argv arriving exactly as given, one
connection reused, reconnection after sshd went away and came back, a host key other than the
trusted one refused before logging in (both fingerprints named, no key in any message)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import asyncssh
import pytest

from pilothouse.drivers import ssh
from pilothouse.drivers.transport import TransportPool, TransportUnavailable
from tests.support.netns import Hosts


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["true"], "true"),
        (["echo", "a b", "$HOME", "it's"], "echo 'a b' '$HOME' 'it'\"'\"'s'"),
        (["sh", "-c", "x; y"], "sh -c 'x; y'"),
    ],
)
def test_command_line_quotes_each_argument(argv: list[str], line: str) -> None:
    assert ssh.command_line(argv) == line


@pytest.mark.parametrize(
    ("failures", "seconds"), [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (6, 15.0), (60, 15.0)]
)
def test_backoff_doubles_up_to_the_cap(failures: int, seconds: float) -> None:
    assert ssh.backoff(failures) == seconds


def test_client_keys_refused_without_quoting_them(tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(tmp_path / "k")],
        check=True,
        timeout=20,
    )
    locked = (tmp_path / "k").read_text()
    with pytest.raises(ValueError, match="passphrase") as refused:
        ssh.private_key(locked)
    assert locked.splitlines()[1] not in str(refused.value)
    for text in ("", "ssh-ed25519 AAAA", "-----BEGIN OPENSSH PRIVATE KEY-----\nAA\n", "\x00"):
        with pytest.raises(ValueError, match="not an OpenSSH or PEM private key"):
            ssh.private_key(text)


@pytest.mark.parametrize(
    ("reason", "closed", "refused"),
    [
        ("open failed", False, True),  # sshd's answer at MaxSessions
        ("administratively prohibited", False, True),
        ("open failed", True, False),  # the connection went away meanwhile
        (ssh.CONNECTION_CLOSED, False, False),  # asyncssh's own, the connection is gone
    ],
)
def test_a_refused_channel_is_told_from_a_lost_connection(
    reason: str, closed: bool, refused: bool
) -> None:
    exc = asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, reason)
    assert ssh.channel_refused(exc, connection_closed=closed) is refused


async def test_run_start_and_reconnect(netns_hosts: Callable[[int], Hosts]) -> None:
    hosts = netns_hosts(1)
    host = hosts[0]
    pool = TransportPool()
    transport = pool.get(host.access())
    assert isinstance(transport, ssh.SSHTransport)
    assert "PRIVATE" not in repr(transport) and "PRIVATE" not in repr(host.access())
    try:
        done = await transport.run(["cat"], input=b"over stdin\n")
        assert (done.exit_status, done.stdout) == (0, b"over stdin\n")
        odd = ["printf", "%s|", "a b", "$HOME", "it's", ";rm -rf /"]
        done = await transport.run(odd)
        assert done.stdout == b"a b|$HOME|it's|;rm -rf /|"
        done = await transport.run(["sh", "-c", "echo oops >&2; exit 3"])
        assert (done.exit_status, done.stderr) == (3, b"oops\n")
        with pytest.raises(TimeoutError):
            await transport.run(["sleep", "5"], timeout=0.5)

        channel = await transport.start(
            ["sh", "-c", 'read a; echo "got $a"; read b; echo "then $b"; exit 7']
        )
        await channel.write(b"one\n")
        assert await channel.readline() == b"got one\n"
        await channel.write(b"two\n")
        await channel.write_eof()
        assert await channel.readline() == b"then two\n"
        assert await channel.readline() == b""
        assert await channel.wait() == 7
        channel.close()
        assert transport.connects == 1  # everything above shared one connection
        assert "Accepted publickey for root" in (host.folder / "sshd.log").read_text()

        host.stop_sshd()  # every session dies with it
        with pytest.raises(TransportUnavailable) as failed:
            for _ in range(3):
                await transport.run(["true"], timeout=5)
                await asyncio.sleep(0.2)
        assert host.name in str(failed.value)
        host.start_sshd()
        deadline = time.monotonic() + 15
        while True:
            try:
                done = await transport.run(["echo", "back"], timeout=5)
                break
            except TransportUnavailable:
                assert time.monotonic() < deadline, "no reconnection after sshd came back"
                await asyncio.sleep(0.2)
        assert done.stdout == b"back\n"
        assert transport.connects == 2
    finally:
        await pool.close()


async def test_other_host_key_refused_naming_both_fingerprints(
    netns_hosts: Callable[[int], Hosts],
) -> None:
    first, second = netns_hosts(2)
    # The first host's address, but the second host's key is the trusted one.
    access = replace(first.access(), host_key=second.host_key)
    transport = ssh.SSHTransport(access)
    try:
        with pytest.raises(ssh.HostKeyMismatch) as refused:
            await transport.run(["true"])
    finally:
        await transport.close()
    text = str(refused.value)
    assert first.name in text and "mismatch" in text
    assert first.fingerprint in text and second.fingerprint in text
    # What to do, with commands that exist (there is no command that updates a node's key).
    assert f"pilothouse node remove {first.name}" in text and "pilothouse node add" in text
    assert "update the node's key" not in text
    assert "PRIVATE KEY" not in text and first.private_key.splitlines()[1] not in text
    # sshd saw no login attempt at all: the key was refused before authentication
    assert "Accepted" not in (first.folder / "sshd.log").read_text()


async def test_a_refused_channel_fails_that_command_only(
    netns_hosts: Callable[[int], Hosts],
) -> None:
    (host,) = netns_hosts(1)
    host.set_max_sessions(2)
    transport = ssh.SSHTransport(host.access())
    held = []
    try:
        for _ in range(2):
            held.append(await transport.start(["sh", "-c", 'while read a; do echo "$a"; done']))
        with pytest.raises(TransportUnavailable, match="MaxSessions") as refused:
            await transport.start(["true"])
        assert host.name in str(refused.value)
        with pytest.raises(TransportUnavailable, match="MaxSessions"):
            await transport.run(["true"])
        # The channels already open go on, on the same connection.
        for channel in held:
            await channel.write(b"still here\n")
            assert await channel.readline() == b"still here\n"
        assert transport.connects == 1
        # A session freed, the next command runs (no reconnection, no backoff).
        await held.pop().write_eof()
        for _ in range(50):
            try:
                done = await transport.run(["echo", "ok"])
                break
            except TransportUnavailable:
                await asyncio.sleep(0.1)
        assert done.stdout == b"ok\n" and transport.connects == 1
    finally:
        for channel in held:
            channel.close()
        await transport.close()
