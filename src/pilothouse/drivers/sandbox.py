"""What a replica or a command starts with: its identity and its environment.

Defense in depth behind the role rule (only admins define what runs on the host):

- **Identity.** When pilothouse runs as root, every replica and command runs as an unprivileged
  user: the environment's `config.run_as`, else `PILOTHOUSE_RUN_AS`, else `pilothouse-run`
  (`pilothouse init` creates it). It cannot read the data directory (mode 0700, owned by
  pilothouse): not the master key, not the SQLite store, not other replicas' logs; nor
  /proc/PID/environ of pilothouse. A missing user is an error, never a silent fall back to
  root. When pilothouse does not run as root it cannot switch users: children then run as
  pilothouse's own user and can read what it can (docs/security.md says what follows).
- **Environment.** A child starts from an allowlist of pilothouse's environment (PATH, locale,
  time zone, TMPDIR, plus the names listed in `PILOTHOUSE_CHILD_ENV`), never from all of it: no
  `PILOTHOUSE_*` setting (data directory, store URL, master key), no token, no cloud credential
  pilothouse itself uses. What the child needs beyond that it gets as variables.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from typing import Any

from pilothouse.drivers.base import RolloutFailed

DEFAULT_RUN_AS = "pilothouse-run"
#: Names of pilothouse's own environment a child may inherit.
BASE_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR")
#: Never handed down, even when listed in PILOTHOUSE_CHILD_ENV.
NEVER = frozenset(
    {
        "PILOTHOUSE_DATA_DIR",
        "PILOTHOUSE_DATABASE_URL",
        "PILOTHOUSE_MASTER_KEY",
        "PILOTHOUSE_TOKEN",
        "PILOTHOUSE_URL",
        "PILOTHOUSE_BACKUP_DSN",
        "PILOTHOUSE_RESTORE_DSN",
        "PILOTHOUSE_CHILD_ENV",
        "PILOTHOUSE_RUN_AS",
    }
)


def passed_names(listed: str) -> list[str]:
    """Names from a PILOTHOUSE_CHILD_ENV value (comma separated), minus the forbidden ones."""
    names = [n.strip() for n in listed.split(",") if n.strip()]
    return [n for n in names if n not in NEVER]


def base_environ() -> dict[str, str]:
    """The allowlisted part of pilothouse's environment (also what its own helpers get)."""
    source = os.environ
    names = {*BASE_ENV, *passed_names(source.get("PILOTHOUSE_CHILD_ENV", ""))}
    env = {
        k: v for k, v in source.items() if (k in names or k.startswith("LC_")) and k not in NEVER
    }
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def child_environ(run_as: str | None = None) -> dict[str, str]:
    """The environment a replica or command starts from (the caller adds its variables)."""
    source = os.environ
    env = base_environ()
    user = identity(run_as)
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    elif "HOME" in source:
        env["HOME"] = source["HOME"]
    return env


def run_as_name(configured: str | None) -> str | None:
    """The user children run as: None when pilothouse is not root (it cannot switch)."""
    if os.geteuid() != 0:
        return None
    return configured or os.environ.get("PILOTHOUSE_RUN_AS") or DEFAULT_RUN_AS


def identity(configured: str | None) -> pwd.struct_passwd | None:
    """The passwd entry children run as (None: as pilothouse); RolloutFailed if it is missing."""
    name = run_as_name(configured)
    if name is None:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise RolloutFailed(
            f"user {name!r} that replicas and commands run as does not exist: run "
            "`pilothouse init` as root (it creates it) or set the environment's config.run_as"
        ) from None


def popen_identity(configured: str | None) -> dict[str, Any]:
    """Keyword arguments of subprocess.Popen that switch to the run-as user (or nothing)."""
    user = identity(configured)
    if user is None or user.pw_uid == os.geteuid():
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def ensure_run_user(name: str = DEFAULT_RUN_AS) -> bool:
    """Create the unprivileged system user (no home, no login shell) when pilothouse is root
    and it is missing; True if created."""
    if os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam(name)
        return False
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=True,
        capture_output=True,
    )
    return True
