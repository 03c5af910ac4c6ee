"""Replicas on another node: a supervising shim per replica, and listing, stopping and fencing
them, all through a `Transport` (drivers/transport.py).

The shim is self-contained standard-library Python sent as `python3 -c SHIM`; its argv names
the node, the replica, the release and the version (none of them secret), so one listing finds
every pilothouse replica on a node. It reads ONE JSON line from stdin: the command, its
variables (they travel only over stdin into the replica's environment, never on the node's disk
or on a command line), the version, the working directory and the address to bind. It picks a
free port on that address, starts the replica in its own session, reports
`{"pid", "started_at", "port"}` as its first stdout line, then relays the replica's output line
by line, and `MARKER{"exit": CODE}` when the replica ends: MARKER is a random nonce per start,
sent in the order over stdin, so no line the replica prints can pass for the shim's report (the
replica's own output, `{"exit": 0}` included, is relayed as output). It ignores SIGHUP and
SIGPIPE: when the channel goes away (the connection dropped, pilothouse restarted) it keeps
draining the replica's output to nowhere, so the replica never dies of a closed pipe.

The control host scrubs the relayed lines (the scrubber's rule: core/redact.py) before they
reach the replica's log file (and from there the deployment's logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilothouse.core import redact
from pilothouse.drivers.command import MAX_LINE
from pilothouse.drivers.transport import Channel, Transport

#: The interpreter on the node (issue 20: nodes need python3).
PYTHON = "python3"
SHIM_MARK = "pilothouse-shim"

SHIM = r"""
import json, os, signal, socket, subprocess, sys, time
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGPIPE, signal.SIG_IGN)
try:
    os.setsid()
except OSError:
    pass
def started(pid):
    with open("/proc/%d/stat" % pid) as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        boot = next(int(l.split()[1]) for l in f if l.startswith("btime "))
    return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)
out = sys.stdout.buffer
def say(data):
    global out
    if out is None:
        return
    try:
        out.write(data)
        out.flush()
    except (OSError, ValueError):
        out = None
line = sys.stdin.buffer.readline()
try:
    order = json.loads(line)
    marker = order["marker"]
    host = order.get("host") or "127.0.0.1"
    sock = socket.socket()
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    sock.close()
    command = order["command"].replace("{port}", str(port)).replace("{version}", order["version"])
    command = command.replace("{host}", host)
    env = dict(order.get("env") or {})
    env.update(PORT=str(port), HOST=host, PILOTHOUSE_VERSION=order["version"])
    env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    proc = subprocess.Popen(["/bin/sh", "-c", "exec " + command], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=order.get("cwd") or None,
        start_new_session=True)
except Exception as exc:
    say((json.dumps({"error": "%s: %s" % (type(exc).__name__, exc)}) + "\n").encode())
    sys.exit(2)
del line, order, env
sys.stdin.close()
say((json.dumps({"pid": proc.pid, "started_at": started(proc.pid), "port": port}) + "\n").encode())
for chunk in iter(lambda: proc.stdout.readline(65536), b""):
    say(chunk if chunk.endswith(b"\n") else chunk + b"\n")
say((marker + json.dumps({"exit": proc.wait()}) + "\n").encode())
"""

#: Lists every shim on the node (argv: node id to keep to), with its replica's figures. With
#: a second argument `loop` it stays: one listing line per line read on stdin, until EOF (the
#: process driver's poller keeps one such channel per node: ONE shell and interpreter start
#: per connection, not one per listing).
LISTER = r"""
import json, os, sys, time
node = sys.argv[1]
clk, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
with open("/proc/stat") as f:
    boot = next(int(l.split()[1]) for l in f if l.startswith("btime "))
def stat(pid):
    with open("/proc/%s/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[19]), int(rest[21])
def scan():
    shims, children = {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
            ours = len(argv) >= 8 and argv[1] == "-c" and argv[3] == "pilothouse-shim"
            if ours and node in ("*", argv[4]):
                shims[int(pid)] = argv[5:8]
            else:
                children.setdefault(stat(pid)[0], []).append(int(pid))
        except (OSError, IndexError, ValueError):
            pass
    first = {}
    for shim in shims:
        for child in children.get(shim, []):
            try:
                first[child] = (shim, stat(child)[1], time.monotonic())
            except (OSError, IndexError, ValueError):
                pass
    time.sleep(0.1)
    found = []
    for child, (shim, cpu, at) in first.items():
        try:
            _, cpu2, ticks, rss = stat(child)
        except (OSError, IndexError, ValueError):
            continue
        rid, release, version = shims[shim]
        found.append({"replica_id": rid, "release_id": release, "version": version,
            "pid": child, "shim_pid": shim, "started_at": round(boot + ticks / clk, 2),
            "cpu_percent": round(100.0 * (cpu2 - cpu) / clk / max(time.monotonic() - at, 1e-3), 1),
            "memory_mb": round(rss * page / 1048576.0, 2)})
    return found
if sys.argv[2:] == ["loop"]:
    for _ in iter(sys.stdin.readline, ""):
        sys.stdout.write(json.dumps(scan()) + "\n")
        sys.stdout.flush()
else:
    print(json.dumps(scan()))
"""

#: Stops process groups: argv grace then pid:started_at pairs; prints the pids it stopped.
STOPPER = r"""
import json, os, signal, sys, time
grace = float(sys.argv[1])
with open("/proc/stat") as f:
    boot = next(int(l.split()[1]) for l in f if l.startswith("btime "))
def same(pid, at):
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    if rest[0] == "Z":
        return False
    return at <= 0 or abs(boot + int(rest[19]) / os.sysconf("SC_CLK_TCK") - at) < 0.05
targets = []
for arg in sys.argv[2:]:
    pid, at = arg.split(":")
    if same(int(pid), float(at)):
        targets.append((int(pid), float(at)))
for pid, _ in targets:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        pass
deadline = time.monotonic() + grace
while time.monotonic() < deadline and any(same(p, a) for p, a in targets):
    time.sleep(0.05)
for pid, at in targets:
    if same(pid, at):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
for _ in range(100):
    if not any(same(p, a) for p, a in targets):
        break
    time.sleep(0.02)
print(json.dumps([p for p, _ in targets]))
"""


class RemoteError(RuntimeError):
    """The node answered, but the command failed (its message says how)."""


@dataclass(frozen=True)
class RemoteReplica:
    """A shim-supervised replica seen on a node."""

    replica_id: uuid.UUID
    release_id: str  # the deployment that started it ("-" when none)
    version: str
    pid: int
    started_at: float
    cpu_percent: float = 0.0
    memory_mb: float = 0.0


@dataclass(frozen=True)
class Order:
    """What a shim is told over stdin (the env is never written anywhere else)."""

    command: str
    version: str
    env: dict[str, str]
    cwd: str | None
    host: str
    #: Prefixes the shim's exit report (a new nonce per start; the replica never sees it).
    marker: str = field(default_factory=lambda: f"#pilothouse-{secrets.token_hex(16)}#")

    def line(self) -> bytes:
        body = {
            "command": self.command,
            "version": self.version,
            "env": self.env,
            "cwd": self.cwd,
            "host": self.host,
            "marker": self.marker,
        }
        return json.dumps(body).encode() + b"\n"


def shim_argv(node_id: uuid.UUID, replica_id: uuid.UUID, release: str, version: str) -> list[str]:
    return [PYTHON, "-c", SHIM, SHIM_MARK, str(node_id), str(replica_id), release or "-", version]


@dataclass
class Started:
    pid: int
    started_at: float
    port: int
    channel: Channel
    marker: str  # the shim's exit report starts with it (Relay)


async def start(
    transport: Transport,
    node_id: uuid.UUID,
    replica_id: uuid.UUID,
    release: str,
    order: Order,
    *,
    timeout: float = 30.0,
) -> Started:
    """Start a replica under its shim on the node; RemoteError when it could not start."""
    channel = await transport.start(shim_argv(node_id, replica_id, release, order.version))
    try:
        await channel.write(order.line())
        await channel.write_eof()
        first = await asyncio.wait_for(channel.readline(), timeout)
        reply = json.loads(first) if first.strip() else {"error": "the shim ended at once"}
    except (TimeoutError, ValueError, OSError) as exc:
        await _drop(channel)
        raise RemoteError(f"the shim did not answer: {type(exc).__name__}") from None
    if "error" in reply:
        await _drop(channel)
        raise RemoteError(str(reply["error"]))
    pid, at, port = int(reply["pid"]), float(reply["started_at"]), int(reply["port"])
    return Started(pid, at, port, channel, order.marker)


async def _drop(channel: Channel) -> None:
    channel.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(channel.wait(), 5)


class Relay:
    """Reads a shim's channel: scrubbed lines appended to the replica's log file; the exit
    code once the shim reports it (a line starting with `marker`, the start's nonce; without a
    marker, e.g. a container's `logs --follow`, every line is output)."""

    def __init__(
        self,
        channel: Channel,
        log_path: Path,
        secrets: list[str],
        *,
        pid: int | None = None,
        marker: str | None = None,
    ) -> None:
        self.channel = channel
        self.pid = pid
        self.marker = marker.encode() if marker else None
        self.log_path = log_path
        self.patterns = redact.patterns(secrets)
        self.exit_code: int | None = None
        self.exited = False
        self.task: asyncio.Task[None] | None = None

    def begin(self) -> Relay:
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.log_path, "ab", buffering=0) as log:
                while True:
                    line = await self.channel.readline()
                    if not line:
                        break
                    if self.marker is not None and line.startswith(self.marker):
                        with contextlib.suppress(ValueError, KeyError, TypeError):
                            report = json.loads(line[len(self.marker) :])
                            self.exit_code = int(report["exit"])
                            self.exited = True
                            continue
                    text = line.decode(errors="replace").rstrip("\n")[:MAX_LINE]
                    with contextlib.suppress(OSError):  # a full disk drops the line
                        log.write((redact.scrub(text, self.patterns) + "\n").encode())
            with contextlib.suppress(TimeoutError):  # reap the shim (it ends with the replica)
                await asyncio.wait_for(self.channel.wait(), 5)
        except Exception:  # the channel went away: the replica itself goes on
            pass
        finally:
            self.channel.close()

    def close(self) -> None:
        """Let go of the channel; the reading task ends when the channel does (and reaps)."""
        self.channel.close()

    async def finish(self, timeout: float = 5.0) -> None:
        """Wait for the channel to end (the shim exited), at most `timeout` seconds."""
        self.channel.close()
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            self.task.cancel()


async def running(transport: Transport, node_id: uuid.UUID | None = None) -> list[RemoteReplica]:
    """Every shim-supervised replica on the node (one command): ids, pid, start time, CPU
    percent (over 0.1 s) and resident memory; with `node_id`, only those started for that
    node (several test nodes may share one machine). TransportUnavailable when the node does not
    answer; RemoteError when the listing failed there."""
    done = await transport.run([PYTHON, "-c", LISTER, str(node_id or "*")], timeout=15)
    if done.exit_status != 0:
        raise RemoteError(f"listing failed on {transport.node}: {done.stderr[-300:]!r}")
    return _parse(done.stdout)


def _parse(line: bytes) -> list[RemoteReplica]:
    found = []
    for row in json.loads(line or b"[]"):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            found.append(_remote(row))
    return found


class Lister:
    """A node's listing over ONE long-running channel (`LISTER ... loop`): each `list()`
    writes a line and reads one JSON listing back, so a listing every second costs no shell or
    interpreter start on the node (over SSH each command starts the user's login shell, which
    reads its rc files: on this machine ~0.3 s of CPU for root's pyenv init). A channel that
    ended (the connection dropped, the lister exited) is started again once at once; one that
    does not answer within `timeout` is dropped (a late line would answer the next request)
    and started again on the next call. Calls are serialised."""

    def __init__(self, transport: Transport, node_id: uuid.UUID | None) -> None:
        self.transport = transport
        self.node_id = node_id
        self.channel: Channel | None = None
        self.starts = 0  # how many channels were started (tests, bench)
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    async def list(self, timeout: float = 15.0) -> list[RemoteReplica]:
        """The node's replicas now; TransportUnavailable, RemoteError or TimeoutError."""
        async with self._lock:
            for attempt in (1, 2):
                fresh = self.channel is None
                if self.channel is None:
                    argv = [PYTHON, "-c", LISTER, str(self.node_id or "*"), "loop"]
                    self.channel = await self.transport.start(argv)
                    self.starts += 1
                channel = self.channel
                try:
                    await channel.write(b"\n")
                    line = await asyncio.wait_for(channel.readline(), timeout)
                except TimeoutError:
                    self._drop()
                    node = self.transport.node
                    raise TimeoutError(f"node {node}: no listing in {timeout:g} s") from None
                except (OSError, ValueError, RuntimeError, EOFError):
                    line = b""
                except BaseException:  # cancelled mid-request: its answer would answer the next
                    self._drop()
                    raise
                if line:
                    try:
                        return _parse(line)
                    except ValueError:
                        self._drop()
                        raise RemoteError(f"listing on {self.transport.node}: not JSON") from None
                self._drop()
                if fresh or attempt == 2:
                    raise RemoteError(f"the listing channel on {self.transport.node} ended")
            raise AssertionError("unreachable")

    def _drop(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            task = asyncio.get_running_loop().create_task(_drop(channel))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        async with self._lock:
            self._drop()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


def _remote(row: dict[str, Any]) -> RemoteReplica:
    return RemoteReplica(
        uuid.UUID(row["replica_id"]),
        str(row["release_id"]),
        str(row["version"]),
        int(row["pid"]),
        float(row["started_at"]),
        float(row.get("cpu_percent") or 0.0),
        float(row.get("memory_mb") or 0.0),
    )


async def stop_many(
    transport: Transport, targets: list[tuple[int, float]], grace: float
) -> list[int]:
    """SIGTERM each (pid, started_at) process group, SIGKILL after `grace`; returns the pids
    that were still that process and were stopped."""
    if not targets:
        return []
    argv = [PYTHON, "-c", STOPPER, f"{grace:g}", *(f"{pid}:{at}" for pid, at in targets)]
    done = await transport.run(argv, timeout=grace + 30)
    if done.exit_status != 0:
        raise RemoteError(f"stop failed on {transport.node}: {done.stderr[-300:]!r}")
    return [int(pid) for pid in json.loads(done.stdout or b"[]")]


async def stop(transport: Transport, replica: RemoteReplica, grace: float) -> bool:
    """Stop one replica (its process group: TERM, KILL after `grace`); whether it was there."""
    return bool(await stop_many(transport, [(replica.pid, replica.started_at)], grace))


async def fence(
    transport: Transport,
    keep: set[uuid.UUID],
    *,
    node_id: uuid.UUID | None = None,
    grace: float = 10.0,
) -> list[RemoteReplica]:
    """Stop every pilothouse replica on the node whose id is not in `keep` (a host that came
    back after its replicas were replaced); returns what it stopped."""
    strays = [r for r in await running(transport, node_id) if r.replica_id not in keep]
    stopped = set(await stop_many(transport, [(r.pid, r.started_at) for r in strays], grace))
    return [r for r in strays if r.pid in stopped]
