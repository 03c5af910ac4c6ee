"""How pilothouse runs commands on a node: on this host, or on another host over SSH.

The process and container drivers reach every node through a `Transport`: short commands with
`run` (a probe, a kill, a listing) and long-running ones with `start` (a replica's supervising
shim, whose stdin carries the replica's variables and whose stdout relays its scrubbed output).
`LocalTransport` runs them as subprocesses of this process; `drivers/ssh.py` runs them over one
multiplexed asyncssh connection per host.

A transport never sees the store: `NodeAccess` is what the store knows about reaching a node,
its private key already unsealed (and never printed: its repr hides it).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

TransportKind = Literal["local", "ssh"]


class TransportUnavailable(Exception):
    """The node does not answer: connection refused or timed out, authentication or host-key
    check failed. The message names the node and the cause, never a key."""


@dataclass(frozen=True)
class Completed:
    """A finished short command."""

    exit_status: int
    stdout: bytes
    stderr: bytes


class Channel(Protocol):
    """A long-running command on a node: write its stdin, read its stdout by lines."""

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None: ...

    async def readline(self) -> bytes:
        """The next line of stdout with its newline; b"" once the command's stdout ended."""
        ...

    async def wait(self) -> int | None:
        """The command's exit status once it ended (None when the node went away)."""
        ...

    def close(self) -> None:
        """Let go of the channel (the command itself may go on running on the node)."""
        ...


class Transport(Protocol):
    """How commands reach one node."""

    kind: TransportKind
    node: str  # the node's name, for messages
    address: str  # where its replicas are reached from this host (router, readiness probes)

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 30.0
    ) -> Completed:
        """Run a command to completion; TransportUnavailable when the node does not answer,
        TimeoutError after `timeout` seconds."""
        ...

    async def start(self, argv: Sequence[str]) -> Channel:
        """Start a long-running command; TransportUnavailable when the node does not answer."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class NodeAccess:
    """What it takes to reach a node; built from its row with the private key unsealed."""

    id: uuid.UUID
    name: str
    kind: TransportKind = "local"
    address: str = "127.0.0.1"
    ssh_user: str | None = None
    ssh_port: int = 22
    host_key: str | None = None  # the trusted host key (OpenSSH public key line)
    private_key: str | None = field(default=None, repr=False)


def _argv(argv: Sequence[str]) -> list[str]:
    if not argv:
        raise ValueError("a command needs at least its program")
    return list(argv)


class _LocalChannel:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    async def write(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()

    async def write_eof(self) -> None:
        assert self._proc.stdin is not None
        if not self._proc.stdin.is_closing():
            self._proc.stdin.close()

    async def readline(self) -> bytes:
        assert self._proc.stdout is not None
        return await self._proc.stdout.readline()

    async def wait(self) -> int | None:
        return await self._proc.wait()

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.is_closing():
            self._proc.stdin.close()


class LocalTransport:
    """Commands on this host, as subprocesses (no shell: argv as given)."""

    kind: TransportKind = "local"

    def __init__(self, node: str = "local", address: str = "127.0.0.1") -> None:
        self.node = node
        self.address = address

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 30.0
    ) -> Completed:
        proc = await asyncio.create_subprocess_exec(
            *_argv(argv),
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return Completed(proc.returncode or 0, out, err)

    async def start(self, argv: Sequence[str]) -> Channel:
        proc = await asyncio.create_subprocess_exec(
            *_argv(argv),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        return _LocalChannel(proc)

    async def close(self) -> None:
        return None


#: Builds the transport of a node; drivers/ssh.py registers the "ssh" kind.
Factory = Callable[[NodeAccess], Transport]
_FACTORIES: dict[str, Factory] = {
    "local": lambda access: LocalTransport(access.name, access.address),
}


def register_kind(kind: TransportKind, factory: Factory) -> None:
    _FACTORIES[kind] = factory


def factory_of(kind: str) -> Factory | None:
    """The registered factory of `kind`; the module `pilothouse.drivers.<kind>` is imported
    on first use so that it registers itself (drivers/ssh.py for "ssh")."""
    if kind not in _FACTORIES and kind.isidentifier():
        with contextlib.suppress(ImportError):
            importlib.import_module(f"pilothouse.drivers.{kind}")
    return _FACTORIES.get(kind)


class TransportPool:
    """One transport per node, opened on first use and reused (for SSH: one multiplexed
    connection per host). `factory` overrides how transports are built (tests).

    It also keeps what the control plane last said about reaching each node (`remember`,
    `known`): drivers see replicas by node id, and look their node up here."""

    def __init__(self, factory: Factory | None = None) -> None:
        self._factory = factory
        self._open: dict[uuid.UUID, tuple[NodeAccess, Transport]] = {}
        self._known: dict[uuid.UUID, NodeAccess] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def remember(self, access: NodeAccess) -> None:
        """What the store says about reaching a node now (the engine tells, every second)."""
        self._known[access.id] = access

    def known(self, node_id: uuid.UUID | None) -> NodeAccess | None:
        return self._known.get(node_id) if node_id is not None else None

    def remote(self, node_id: uuid.UUID | None) -> NodeAccess | None:
        """The node's access when it is reached through a transport other than "local"."""
        access = self.known(node_id)
        return access if access is not None and access.kind != "local" else None

    def get(self, access: NodeAccess) -> Transport:
        held = self._open.get(access.id)
        if held is not None and held[0] == access:
            return held[1]
        factory = self._factory or factory_of(access.kind)
        if factory is None:
            raise TransportUnavailable(f"node {access.name}: no transport for {access.kind!r}")
        transport = factory(access)
        self._open[access.id] = (access, transport)
        if held is not None:  # its access changed (address, key): close the old one meanwhile
            with contextlib.suppress(RuntimeError):  # no loop running: nothing was opened
                task = asyncio.get_running_loop().create_task(self._close(held[1]))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        return transport

    @staticmethod
    async def _close(transport: Transport) -> None:
        with contextlib.suppress(Exception):
            await transport.close()

    async def close(self) -> None:
        held, self._open = list(self._open.values()), {}
        for _, transport in held:
            await self._close(transport)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
