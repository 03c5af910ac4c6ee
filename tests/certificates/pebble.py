"""Debian's pebble (Let's Encrypt's test ACME server) on loopback ports, started by the tests:
its own TLS certificate from trustme, no validation delay (PEBBLE_VA_NOSLEEP), no random nonce
rejections, and its DNS lookups sent to the test's DNS server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import trustme

from tests.conftest import free_port

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"


def available() -> bool:
    return os.path.exists(PEBBLE)


class Pebble:
    def __init__(self, tmp: Path, *, http_port: int, dns_address: str) -> None:
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        cert, key, self.ca_file = tmp / "pebble.pem", tmp / "pebble.key", str(tmp / "pebble-ca.pem")
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        ca.cert_pem.write_to_path(self.ca_file)
        self.port, self.management = free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        path = tmp / "pebble.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        self.log = open(tmp / "pebble.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [PEBBLE, "-config", str(path), "-dnsserver", dns_address],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.close()
                    pytest.fail(f"pebble did not start: {(tmp / 'pebble.log').read_text()}")
                time.sleep(0.05)

    def root_pem(self) -> str:
        """The root that signs pebble's certificates (it makes a new one at every start)."""
        url = f"https://127.0.0.1:{self.management}/roots/0"
        return httpx.get(url, verify=ssl.create_default_context(cafile=self.ca_file)).text

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
