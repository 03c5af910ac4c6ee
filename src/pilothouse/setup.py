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
    run_user: str | None = None  # the unprivileged user replicas run as (created when root)
    created_run_user: bool = False


def secure_data_dir(path: Path) -> None:
    """The data directory exists, is owned by pilothouse's user and is private (0700): the
    master key, the SQLite store and replica logs are out of reach of replicas and commands."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.geteuid() and os.geteuid() == 0:
        os.chown(path, 0, 0)
    elif info.st_uid != os.geteuid():
        return  # not ours to change; `init` run by its owner makes it private
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


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
    from pilothouse.drivers.sandbox import ensure_run_user, run_as_name

    data_dir = settings.data_dir
    secure_data_dir(data_dir)
    run_user = run_as_name(None)
    created_user = ensure_run_user(run_user) if run_user else False
    created_key = False
    key_path: Path | None = None
    if not settings.master_key:
        key_path = settings.master_key_path
        created_key = ensure_master_key(key_path)
    url = settings.effective_database_url()
    migrations.upgrade(url)
    token = asyncio.run(_bootstrap(url, admin_name))
    return InitResult(data_dir, url, key_path, created_key, token, run_user, created_user)
