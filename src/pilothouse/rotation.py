"""Re-encrypt every stored secret under the current master key (after `pilothouse keys rotate`).

Values are rewritten in batches, one transaction per batch, so a crash part-way leaves every
value readable (each row names the key that sealed it, and old keys stay in the key file)."""

from __future__ import annotations

from pilothouse.alerts import service as alerts
from pilothouse.backups import service as backups
from pilothouse.certificates import issue as certificates
from pilothouse.core.crypto import Keyring
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.hooks import service as hooks
from pilothouse.nodes import service as nodes
from pilothouse.variables import service as variables


async def reseal_all(
    db: Database,
    keyring: Keyring,
    *,
    batch: int = 500,
) -> int:
    """Rewrite every variable (and its history), every channel's credentials, every
    environment's config credentials, every backup target DSN, every deploy hook secret, every
    certificate and ACME account key and every node's SSH client key still sealed with an
    older key; returns how many values were rewritten."""
    total = 0
    for reseal_batch in (
        variables.reseal_batch,
        alerts.reseal_batch,
        environments.reseal_batch,
        backups.reseal_batch,
        hooks.reseal_batch,
        certificates.reseal_batch,
        nodes.reseal_batch,
    ):
        while True:
            async with db.session() as session:
                done = await reseal_batch(session, keyring, batch=batch)
            total += done
            if done == 0:
                break
    return total
