"""The nginx router: one stable port per service, upstream = the service's ready replicas.

pilothouse runs Debian's nginx with its own config, pid file and temp paths under
<data_dir>/nginx, writes one file per service and reloads nginx (gracefully: old workers finish
their requests) at every change.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

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


class RouterError(Exception):
    pass


def render_service(key: str, listen_port: int, ports: list[int]) -> str:
    """The nginx config of one service; with no ready replica the upstream answers 502."""
    name = key.replace("-", "")
    if ports:
        servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=0;" for p in ports)
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
        for sub in ("services", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
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

    def pid(self) -> int | None:
        try:
            pid = int((self.root / "nginx.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    async def ensure_started(self) -> None:
        """Start pilothouse's nginx if it is not running."""
        if self.pid() is None:
            self._prepare()
            await self._nginx("-t", "-q")
            await self._nginx()

    async def set_backends(self, service_key: str, listen_port: int, ports: list[int]) -> None:
        """Point the service's stable port at exactly these replica ports, then reload."""
        async with self._lock:
            self._prepare()
            path = self.root / "services" / f"{service_key}.conf"
            path.write_text(render_service(service_key, listen_port, ports))
            if self.pid() is None:
                await self._nginx()
            else:
                await self._nginx("-s", "reload")

    async def remove(self, service_key: str) -> None:
        """Stop routing a service (its port is closed at the next reload)."""
        async with self._lock:
            path = self.root / "services" / f"{service_key}.conf"
            if path.exists():
                path.unlink()
                if self.pid() is not None:
                    await self._nginx("-s", "reload")

    async def stop(self) -> None:
        if self.pid() is not None:
            await self._nginx("-s", "quit")
