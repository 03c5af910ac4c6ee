"""The leak test's webhook half, with real alerts: an incident alert for dependencies whose URLs
carry a password, and a backup failure alert for a target whose DSN carries one. The passwords
are really used (the fake Redis hears its AUTH, the fake PostgreSQL is connected to) and appear
in no webhook body."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from pilothouse.setup import ensure_master_key
from tests.conftest import one_store
from tests.engine_support import Client
from tests.variables.test_deploy import Hook

REDIS_PASSWORD = "sntl-REDIS-6f20aa"
DB_PASSWORD = "sntl-DEPDB-19c4e7"
BACKUP_PASSWORD = "sntl-BKDSN-a83d05"
SENTINELS = (REDIS_PASSWORD, DB_PASSWORD, BACKUP_PASSWORD)


class Listener:
    """A loopback TCP server that records what each connection sends first, answers `reply`
    and hangs up: nothing behind it, so every probe against it fails."""

    def __init__(self, reply: bytes = b"") -> None:
        self.received: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(4096))
                    if self.reply:
                        conn.sendall(self.reply)
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self.sock.close()


def _wait(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@one_store
def test_alerts_carry_no_credential_of_a_dependency_or_a_backup_target(
    stack: dict[str, Any],
) -> None:
    ensure_master_key(stack["data_dir"] / "master.key")
    client: Client = stack["client"]
    hook = Hook()
    redis = Listener(b"-ERR invalid password\r\n")
    postgres = Listener()
    try:
        client.ok(
            "POST",
            "/channels",
            201,
            json={"name": "leakhook", "kind": "webhook", "config": {"url": hook.url}},
        )
        client.ok(
            "POST",
            "/environments",
            201,
            json={
                "name": "dev",
                "config": {
                    "redis_url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis.port}/0",
                    "database_url": (
                        f"postgresql://app:{DB_PASSWORD}@127.0.0.1:{postgres.port}/app"
                    ),
                    "dependency_interval": 1,
                },
            },
        )
        client.setup_service(replicas=1, env_name="dev", versions=("v1.0.0",))
        client.wait(client.deploy("web", "v1.0.0")["id"])
        _wait(lambda: any('"incident"' in body for body in hook.bodies), "an incident alert")
        probed = len(postgres.received)  # connections of the database dependency's probes

        client.ok(
            "POST",
            "/backup-targets?check=false",  # nothing answers: saved unchecked
            201,
            json={
                "name": "app-db",
                # the libpq form: the password in the query, no user:password@
                "dsn": f"postgresql://app@127.0.0.1:{postgres.port}/app?password={BACKUP_PASSWORD}",
                "max_retries": 0,
            },
        )
        client.ok("POST", "/backup-targets/app-db/backups", 202, json={})
        _wait(lambda: any('"backup_failed"' in body for body in hook.bodies), "a backup alert")
    finally:
        redis.close()
        postgres.close()
        hook.server.shutdown()

    # the passwords were in use: the dependency probes opened their targets, Redis heard AUTH
    assert any(REDIS_PASSWORD.encode() in data for data in redis.received), redis.received
    assert probed > 0, "the database dependency was never probed"
    assert len(postgres.received) > probed, "the backup never tried its target"
    for sentinel in SENTINELS:
        hits = [body for body in hook.bodies if sentinel in body]
        assert hits == [], f"{sentinel!r} leaked into {hits}"
