"""Key rotation re-encrypts stored target DSNs in batches (`reseal_batch`, like variables')."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from pilothouse.backups import jobs, service
from pilothouse.backups.models import BackupTarget
from pilothouse.core.crypto import rotate_key_file, sealed_key_id
from tests.backups.conftest import Harness


def test_reseal_batch_rewrites_old_dsns_in_batches(harness: Harness, sqlite_source: Path) -> None:
    for name in ("a", "b", "c"):
        harness.target(name, f"sqlite:///{sqlite_source}?n={name}")
    rotate_key_file(harness.data_dir / "master.key")

    async def batch(ctx: jobs.BackupContext) -> int:
        async with ctx.db.session() as session:
            return await service.reseal_batch(session, ctx.keyring(), batch=2)

    assert [harness.call(batch) for _ in range(3)] == [2, 1, 0]

    async def check(ctx: jobs.BackupContext) -> list[str]:
        keyring = ctx.keyring()
        async with ctx.db.session(write=False) as session:
            targets = list(await session.scalars(sa.select(BackupTarget)))
        assert {sealed_key_id(t.dsn_encrypted) for t in targets} == {keyring.current}
        return sorted(service.target_dsn(t, keyring) for t in targets)

    assert harness.call(check) == [f"sqlite:///{sqlite_source}?n={n}" for n in "abc"]
