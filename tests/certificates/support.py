"""Test servers on loopback: TLS endpoints with trustme certificates (in a thread, so sync
tests and the API's TestClient reach them), an SMTP server offering STARTTLS, and a tiny
authoritative DNS server built on dnspython (UDP, in a thread)."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.message
import dns.opcode
import dns.rdatatype
import dns.rrset
import trustme


def leaf(ca: trustme.CA, *names: str, days: float = 90) -> trustme.LeafCert:
    now = datetime.now(UTC)
    return ca.issue_cert(
        *names, not_before=now - timedelta(days=1), not_after=now + timedelta(days=days)
    )


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return context


class TlsServer:
    """Accepts connections, completes the TLS handshake (or SMTP then STARTTLS), closes."""

    def __init__(self, cert: trustme.LeafCert, *, smtp: bool = False) -> None:
        context = server_context(cert)

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(5)
                try:
                    if smtp:
                        stream = sock.makefile("rwb")
                        stream.write(b"220 test ESMTP\r\n")
                        stream.flush()
                        stream.readline()  # EHLO
                        stream.write(b"250-test\r\n250 STARTTLS\r\n")
                        stream.flush()
                        stream.readline()  # STARTTLS
                        stream.write(b"220 go ahead\r\n")
                        stream.flush()
                    wrapped = context.wrap_socket(sock, server_side=True)
                    wrapped.recv(1)  # until the client closes
                    wrapped.close()
                except (OSError, ssl.SSLError):
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ca_file(ca: trustme.CA, tmp: Path) -> str:
    path = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


class DnsServer:
    """Answers A, CNAME and TXT questions from `records` {(name, type): [values]} over UDP
    (with `default_a`, every other A question gets that address, as pebble's challtestsrv
    does); takes RFC 2136 updates of TXT records over TCP on the same port."""

    def __init__(self, default_a: str | None = None) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.default_a = default_a
        self.updates = 0
        for _ in range(20):  # a UDP port whose TCP twin is free too
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.sock.close()
                self.tcp.close()
        self.tcp.listen(8)
        self.address = f"127.0.0.1:{self.port}"
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()
        threading.Thread(target=self._serve_tcp, daemon=True).start()

    def _serve_tcp(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                try:
                    size = int.from_bytes(conn.recv(2), "big")
                    data = b""
                    while len(data) < size:
                        data += conn.recv(size - len(data))
                    answer = self._answer(data)
                    conn.sendall(len(answer).to_bytes(2, "big") + answer)
                except OSError:
                    pass

    def _answer(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        if query.opcode() == dns.opcode.UPDATE:
            zone = query.question[0].name
            for rrset in query.authority:  # the update section
                name = rrset.name.derelativize(zone).to_text().rstrip(".").lower()
                key = (name, "TXT")
                values = [b"".join(r.strings).decode() for r in rrset] if len(rrset) else []
                if getattr(rrset, "deleting", None) is None:
                    self.records.setdefault(key, []).extend(values)
                else:  # a delete (class NONE or ANY)
                    kept = [v for v in self.records.get(key, []) if v not in values]
                    self.records[key] = kept if values else []
            self.updates += 1
            return bytes(response.to_wire())
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        values = self.records.get((name, rdtype), [])
        if not values and rdtype == "A" and self.default_a:
            values = [self.default_a]
        if values:
            if rdtype == "TXT":
                values = [f'"{v}"' for v in values]
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", rdtype, values)
            )
        return bytes(response.to_wire())

    def set(self, name: str, rdtype: str, *values: str) -> None:
        self.records[(name.rstrip(".").lower(), rdtype)] = list(values)

    def _serve(self) -> None:
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(data), peer)
            except Exception:
                continue

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self.tcp.close()
