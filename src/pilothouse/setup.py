"""First start on this machine: data directory, master key, database, first admin token."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pilothouse import migrations
from pilothouse.config import Settings
from pilothouse.core.db import Database
from pilothouse.users import service as users
from pilothouse.users.models import User


@dataclass
class InitResult:
    data_dir: Path
    database_url: str
    master_key_path: Path | None
    created_key: bool
    admin_token: str | None  # None when an admin already existed


def ensure_master_key(path: Path) -> bool:
    """Create a random 32-byte key file with mode 0600 if none exists; True if created."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = base64.b64encode(secrets.token_bytes(32))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return True


async def _bootstrap(url: str, admin_name: str) -> str | None:
    db = Database(url)
    try:
        async with db.session(write=True) as session:
            if await session.scalar(sa.select(User.id).where(User.role == "admin").limit(1)):
                return None
            _, token = await users.bootstrap_admin(session, admin_name)
            return token
    finally:
        await db.dispose()


def initialise(settings: Settings, *, admin_name: str = "admin") -> InitResult:
    """Idempotent: creates what is missing and issues an admin token only the first time."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    created_key = False
    key_path: Path | None = None
    if not settings.master_key:
        key_path = settings.master_key_path
        created_key = ensure_master_key(key_path)
    url = settings.effective_database_url()
    migrations.upgrade(url)
    token = asyncio.run(_bootstrap(url, admin_name))
    return InitResult(data_dir, url, key_path, created_key, token)
