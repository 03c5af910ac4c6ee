"""Who holds a TCP port on this host.

`holder(port)` tries what a server such as nginx does (SO_REUSEADDR, bind, listen) on the
address; when that fails, psutil names the listening process (its name and pid, when this
process may see them). SO_REUSEADDR keeps connections lingering in TIME_WAIT from counting as
a holder, exactly as they do not stop nginx.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Holder:
    """The process listening on a port; pid and name are None when it cannot be seen."""

    pid: int | None = None
    name: str | None = None

    def __str__(self) -> str:
        if self.pid is None:
            return "another process"
        return f"{self.name or 'a process'} (pid {self.pid})"


def holder(port: int, host: str = "127.0.0.1") -> Holder | None:
    """None when `host:port` is free to listen on; otherwise who holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return None  # e.g. a privileged port: not a holder we can tell about
            return listener(port)
    return None


def listener(port: int) -> Holder:
    """The process with a listening TCP socket on `port` (any address), as far as visible."""
    try:
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    break
                try:
                    return Holder(conn.pid, psutil.Process(conn.pid).name())
                except psutil.Error:
                    return Holder(conn.pid)
    except (psutil.Error, OSError):
        pass
    return Holder()
