"""The nginx router: one stable port per service, upstream = the service's ready replicas.

pilothouse runs Debian's nginx with its own config, pid file and temp paths under
<data_dir>/nginx, writes one file per service and reloads nginx (gracefully: old workers finish
their requests) at every change. nginx keeps serving while pilothouse restarts (like the
replicas); it stops with the last service it routes, or with stop(), which returns only once
its master and every worker are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from pilothouse.core import ports

MAIN_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {root}/services/*.conf;
    include {root}/sites/*.conf;
}}
"""

SERVICE_CONF = """\
# managed by pilothouse: service {key}
upstream svc_{name} {{
{servers}
    keepalive 16;
}}
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://svc_{name};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_next_upstream error timeout http_502 http_503;
        proxy_next_upstream_tries 3;
        proxy_connect_timeout 2s;
    }}
}}
"""


@dataclass(frozen=True)
class Site:
    """A custom domain: the service (by its key) whose upstream it proxies to, and its
    certificate and key files once it has a certificate (until then it is served over HTTP,
    so the ACME HTTP-01 challenge can reach pilothouse)."""

    domain: str
    service_key: str
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class TlsSettings:
    https_port: int = 443
    http_port: int = 80
    bind: str = "0.0.0.0"
    hsts: bool = False
    hsts_max_age: int = 31536000
    #: Where /.well-known/acme-challenge/ is proxied (pilothouse's API), host:port.
    challenges: str = "127.0.0.1:8600"


PROXY = """\
        proxy_pass http://svc_{upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-Proto {scheme};
        proxy_next_upstream error timeout http_502 http_503;
"""


def render_sites(sites: list[Site], tls: TlsSettings) -> str:
    """The nginx config of the custom domains. On the HTTP port, per domain: the ACME HTTP-01
    path goes to pilothouse's API; everything else is redirected to HTTPS once the domain has
    a certificate, else proxied to its service. On the HTTPS port, per domain with a
    certificate (SNI): a TLS server with it, proxying to its service, HSTS optional."""
    port = "" if tls.https_port == 443 else f":{tls.https_port}"
    hsts = (
        f'    add_header Strict-Transport-Security "max-age={tls.hsts_max_age}" always;\n'
        if tls.hsts
        else ""
    )
    blocks = []
    for site in sorted(sites, key=lambda s: s.domain):
        upstream = site.service_key.replace("-", "")
        secure = site.cert_file is not None and site.key_file is not None
        plain = (
            f"        return 308 https://$host{port}$request_uri;\n"
            if secure
            else PROXY.format(upstream=upstream, scheme="http")
        )
        blocks.append(
            f"""\
# managed by pilothouse: {site.domain}
server {{
    listen {tls.bind}:{tls.http_port};
    server_name {site.domain};
    location /.well-known/acme-challenge/ {{
        proxy_pass http://{tls.challenges};
        proxy_set_header Host $host;
    }}
    location / {{
{plain}    }}
}}
"""
        )
        if secure:
            blocks.append(
                f"""\
server {{
    listen {tls.bind}:{tls.https_port} ssl;
    server_name {site.domain};
    ssl_certificate {site.cert_file};
    ssl_certificate_key {site.key_file};
    ssl_protocols TLSv1.2 TLSv1.3;
{hsts}    location / {{
{PROXY.format(upstream=upstream, scheme="https")}    }}
}}
"""
            )
    return "\n".join(blocks)


#: Seconds a stopping nginx has to finish its requests before what is left is killed.
STOP_TIMEOUT = 10.0
#: Seconds nginx has to replace its workers after a reload before the change counts as failed.
RELOAD_TIMEOUT = 10.0


class RouterError(Exception):
    pass


def _children(pid: int) -> list[int]:
    """The pids of a process's children: the kernel's list of them when it keeps one
    (CONFIG_PROC_CHILDREN), else psutil's (a scan of every process)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(word) for word in handle.read().split()]
    except FileNotFoundError:
        with contextlib.suppress(psutil.Error):
            return [child.pid for child in psutil.Process(pid).children()]
        return []
    except OSError:
        return []


class ErrorLog:
    """nginx's error.log read as it grows, from where it ended when this was made: `emergency`
    finds an `[emerg]` line (a configuration the master refused) however many lines come
    before it, each call reading on from where the last one stopped."""

    #: Bytes read at most per call (the rest on the next).
    READ = 1024 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset, self._inode = 0, 0  # no log yet: all of the one that comes
        with contextlib.suppress(OSError):
            stat = path.stat()
            self.offset, self._inode = stat.st_size, stat.st_ino
        self._partial = b""  # the end of a line not written whole yet

    def emergency(self) -> str | None:
        """The first `[emerg]` line written since the last call, else None. A log that got
        smaller or is another file (truncated, rotated) is read from its start."""
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_size < self.offset or stat.st_ino != self._inode:
                    self.offset, self._inode, self._partial = 0, stat.st_ino, b""
                handle.seek(self.offset)
                chunk = handle.read(self.READ)
        except OSError:
            return None
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines[-1][-4096:]
        for line in lines:
            if b"[emerg]" in line:
                text = line.decode(errors="replace")
                return text.split("[emerg]", 1)[1].strip()[:500]
        return None


def backend(value: str | int) -> str:
    """A replica as nginx reaches it: "host:port" (a bare port is on this host)."""
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5}|\d{1,5}", text):
        raise ValueError(f"not a backend address: {text!r}")
    return text if ":" in text else f"127.0.0.1:{text}"


def render_service(key: str, listen_port: int, backends: Sequence[str | int]) -> str:
    """The nginx config of one service; with no ready replica the upstream answers 502.
    `backends`: "host:port" of each replica (on any node), or a bare port on this host."""
    name = key.replace("-", "")
    if backends:
        servers = "\n".join(f"    server {backend(b)} max_fails=0;" for b in backends)
    else:
        servers = "    server 127.0.0.1:9 down;"
    return SERVICE_CONF.format(key=key, name=name, servers=servers, port=listen_port)


class NginxRouter:
    def __init__(self, root: Path, binary: str | None = None) -> None:
        self.root = root
        self.binary = binary or shutil.which("nginx") or "/usr/sbin/nginx"
        self._lock = asyncio.Lock()

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"

    def _prepare(self) -> None:
        for sub in (
            "services",
            "sites",
            "tls",
            "tmp/body",
            "tmp/proxy",
            "tmp/fastcgi",
            "tmp/uwsgi",
            "tmp/scgi",
        ):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(MAIN_CONF.format(root=self.root))

    async def _nginx(self, *args: str) -> None:
        if not os.path.exists(self.binary):
            raise RouterError("nginx is not installed (Debian package `nginx-light` or `nginx`)")
        # Output goes to a file, not a pipe: when nginx daemonizes, the daemon would hold a
        # pipe open and we would wait for its end forever.
        out_path = self.root / "nginx.out"
        with open(out_path, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                "-p",
                str(self.root),
                "-c",
                str(self.conf),
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
            code = await proc.wait()
        if code != 0:
            detail = out_path.read_text(errors="replace")[-500:]
            raise RouterError(f"nginx {' '.join(args) or 'start'} failed: {detail}")

    def _ours(self, proc: psutil.Process) -> bool:
        """An nginx master running this router's configuration (`-c conf` on its command
        line, as a whole argument)."""
        args = proc.cmdline()
        return proc.name().startswith("nginx") and any(
            arg == "-c" and value == str(self.conf) for arg, value in itertools.pairwise(args)
        )

    def pid(self) -> int | None:
        """The running master's pid, or None (a dead master, or its pid reused by another
        program, another nginx included, is not running): it runs this router's
        configuration (its command line names `conf`)."""
        try:
            proc = psutil.Process(int((self.root / "nginx.pid").read_text().strip()))
            if proc.status() != psutil.STATUS_ZOMBIE and self._ours(proc):
                return proc.pid
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def processes(self) -> list[psutil.Process]:
        """Every live process of this router: the master leads its own process group (nginx
        calls setsid), and its workers stay in it, even orphaned by a master killed -9."""
        try:
            group = int((self.root / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return []
        try:
            leader = psutil.Process(group)
            if leader.status() != psutil.STATUS_ZOMBIE and not self._ours(leader):
                # A stale pid file whose number another program (another router's nginx)
                # holds now: that group is not ours. Our own orphaned workers cannot be in it
                # (Linux gives no process a pid while a group of that number lives).
                return []
        except psutil.NoSuchProcess:
            pass  # our master is gone: its orphaned workers may still be in its group
        except psutil.Error:
            return []
        found = []
        for proc in psutil.process_iter(["name", "status"]):
            try:
                if (
                    (proc.info["name"] or "").startswith("nginx")
                    and proc.info["status"] != psutil.STATUS_ZOMBIE
                    and os.getpgid(proc.pid) == group
                ):
                    found.append(proc)
            except (OSError, psutil.Error):
                continue
        return found

    def accepting_workers(self) -> list[int]:
        """The pids of the workers that accept new connections: not the master, not a worker
        that is shutting down (nginx closes its listening sockets before it renames itself so).

        Read from the master's children (/proc/<pid>/task/<pid>/children and each child's
        command line): a reload polls this every 20 ms, and a scan of every process on the
        host cost ~6 ms of the event loop each time (130 processes) where this costs ~0.03 ms."""
        master = self.pid()
        if master is None:
            return []
        found = []
        for child in _children(master):
            try:
                with open(f"/proc/{child}/cmdline", "rb") as handle:
                    title = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # exited meanwhile
            if title.startswith("nginx: worker process") and "shutting down" not in title:
                found.append(child)
        return found

    async def _reload(self) -> None:
        """Reload, and return once nginx serves the new configuration: a reload is only a
        signal, and until the old workers stop accepting, a new connection may still reach
        the previous backends (a deployment would report success while traffic went to the
        release it replaced).

        The signal (SIGHUP) goes straight to the master: `nginx -s reload` is a process to
        start from the event loop, which under load held it for up to 0.2 s per reload
        (bench/containers.py). A configuration the master refuses leaves the old workers
        serving; its `[emerg]` line in error.log fails the change at once."""
        master = self.pid()  # first: a dead master would have no workers to wait for
        if master is None:
            raise RouterError("nginx is not running")
        before = set(await self._accepting())
        errors = ErrorLog(self.root / "error.log")
        try:
            os.kill(master, signal.SIGHUP)
        except OSError as exc:
            raise RouterError(f"nginx reload failed: {exc.strerror or exc}") from None
        await self._accepting(besides=before, errors=errors)

    async def _accepting(
        self, besides: set[int] | None = None, errors: ErrorLog | None = None
    ) -> list[int]:
        """Wait until workers accept connections, none of them one of `besides`; their pids.
        With `errors` (error.log from before a reload), an `[emerg]` line written since fails
        at once: the master refused the new configuration."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RELOAD_TIMEOUT
        while True:
            workers = self.accepting_workers()
            if workers and not set(workers) & (besides or set()):
                return workers
            refused = errors.emergency() if errors is not None else None
            if refused is not None:
                raise RouterError(f"nginx reload failed: {refused}")
            if loop.time() > deadline:
                raise RouterError(
                    f"nginx did not take its new configuration within {RELOAD_TIMEOUT:.0f}s "
                    f"(see {self.root / 'error.log'})"
                )
            await asyncio.sleep(0.02)

    def kill(self) -> int:
        """Kill every process of this router at once (SIGKILL); returns how many there were."""
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=5)
        return len(procs)

    async def _stop(self, timeout: float) -> None:
        master = self.pid()
        if master is not None:
            with contextlib.suppress(OSError):
                os.kill(master, signal.SIGQUIT)  # graceful: requests in flight finish
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.processes():
            if loop.time() > deadline:
                self.kill()
                break
            await asyncio.sleep(0.05)
        (self.root / "nginx.pid").unlink(missing_ok=True)

    async def _start(self) -> None:
        self.kill()  # workers orphaned by a master that died hold the ports
        await self._nginx()
        await self._accepting()  # the master daemonizes before its worker listens

    def _serving(self, port: int) -> str | None:
        """The service key whose config listens on `port`, if any."""
        listen = re.compile(rf"^\s*listen 127\.0\.0\.1:{port};", re.MULTILINE)
        for path in sorted((self.root / "services").glob("*.conf")):
            if listen.search(path.read_text(errors="replace")):
                return path.stem
        return None

    def port_holder(self, service_key: str, port: int) -> str | None:
        """Who holds `port`, unless it is free or this router (serving `service_key`, or a
        service it is letting go of; orphaned workers included, the next start takes them)."""
        found = ports.holder(port)
        if found is None:
            return None
        ours = {p.pid for p in self.processes()}
        if found.pid in ours or (found.pid is None and ours and self._serving(port) == service_key):
            owner = self._serving(port)
            return None if owner in (None, service_key) else f"pilothouse's router ({owner})"
        return str(found)

    async def ensure_started(self) -> None:
        """Start pilothouse's nginx if it is not running."""
        if self.pid() is None:
            self._prepare()
            await self._nginx("-t", "-q")
            await self._start()

    async def set_backends(
        self, service_key: str, listen_port: int, backends: Sequence[str | int]
    ) -> None:
        """Point the service's stable port at exactly these replicas ("host:port", on any
        node; a bare port is on this host), then reload."""
        async with self._lock:
            self._prepare()
            path = self.root / "services" / f"{service_key}.conf"
            path.write_text(render_service(service_key, listen_port, backends))
            if self.pid() is None:
                await self._start()
            else:
                await self._reload()

    def routed(self) -> set[str]:
        """The keys of the services this router has an upstream for."""
        return {path.stem for path in (self.root / "services").glob("*.conf")}

    async def set_sites(self, sites: list[Site], tls: TlsSettings) -> bool:
        """Serve these TLS sites (only those whose service this router routes), then reload
        gracefully: old workers finish their requests with the old certificate, new
        connections get the new one. Returns whether anything changed. Certificate files are
        read at reload, so a swap is: write the new files, then call this (or `reload`)."""
        async with self._lock:
            self._prepare()
            state_path, conf_path = (
                self.root / "sites" / "tls.json",
                self.root / "sites" / "tls.conf",
            )
            kept = {p: p.read_text() for p in (state_path, conf_path) if p.exists()}
            state = {"sites": [asdict(s) for s in sites], "tls": asdict(tls)}
            state_path.write_text(json.dumps(state))
            if not self._render_sites():
                return False
            try:
                # A site nginx cannot load (a missing certificate, a port it may not bind)
                # must not break the router for every service: check first, and put the
                # previous sites back when the check or the reload fails.
                await self._nginx("-t", "-q")
                if self.pid() is not None:
                    await self._reload()
            except RouterError:
                for path in (state_path, conf_path):
                    if path in kept:
                        path.write_text(kept[path])
                    else:
                        path.unlink(missing_ok=True)
                raise
            return True

    def _render_sites(self) -> bool:
        """Write sites/tls.conf from the last sites given, keeping only the services routed
        now (a removed service's site would name an upstream that is gone); whether it changed."""
        try:
            state = json.loads((self.root / "sites" / "tls.json").read_text())
        except (OSError, ValueError):
            return False
        routed = self.routed()
        sites = [Site(**s) for s in state["sites"] if s["service_key"] in routed]
        text = render_sites(sites, TlsSettings(**state["tls"]))
        path = self.root / "sites" / "tls.conf"
        if path.exists() and path.read_text() == text:
            return False
        path.write_text(text)
        return True

    async def reload(self) -> None:
        """Reload gracefully (certificate files changed in place)."""
        async with self._lock:
            if self.pid() is not None:
                await self._reload()

    async def remove(self, service_key: str) -> None:
        """Stop routing a service (its port is closed at the next reload); with no service
        left to route, nginx stops."""
        async with self._lock:
            path = self.root / "services" / f"{service_key}.conf"
            if path.exists():
                path.unlink()
                self._render_sites()
                if not any((self.root / "services").glob("*.conf")):
                    await self._stop(STOP_TIMEOUT)
                elif self.pid() is not None:
                    await self._reload()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop nginx gracefully and return once none of its processes is left: what is still
        running after `timeout` seconds (a worker finishing a slow request) is killed."""
        async with self._lock:
            await self._stop(timeout)
