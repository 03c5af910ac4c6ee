"""Re-encrypt every stored secret under the current master key (after `pilothouse keys rotate`).

Values are rewritten in batches, one transaction per batch, so a crash part-way leaves every
value readable (each row names the key that sealed it, and old keys stay in the key file)."""

from __future__ import annotations

import sqlalchemy as sa

from pilothouse.alerts import service as alerts
from pilothouse.backups.models import BackupTarget
from pilothouse.core.crypto import Keyring, open_value, seal_value, sealed_key_id
from pilothouse.core.db import Database
from pilothouse.environments import service as environments
from pilothouse.variables import service as variables


async def reseal_all(
    db: Database,
    keyring: Keyring,
    *,
    batch: int = 500,
) -> int:
    """Rewrite every variable (and its history), every channel's credentials, every
    environment's config credentials and every backup target DSN still sealed with an older
    key; returns how many values were rewritten."""
    total = 0
    for reseal in (variables.reseal_batch, alerts.reseal_batch, environments.reseal_batch):
        while True:
            async with db.session() as session:
                done = await reseal(session, keyring, batch=batch)
            total += done
            if done == 0:
                break
    async with db.session() as session:
        for target in await session.scalars(sa.select(BackupTarget).with_for_update()):
            if sealed_key_id(target.dsn_encrypted) != keyring.current:
                target.dsn_encrypted = seal_value(
                    open_value(target.dsn_encrypted, keyring), keyring
                )
                total += 1
    return total
