"""Command lines for the database tools, as pure functions (tested as exact argument lists).

Building a command is decided here; running it is elsewhere. Passwords never appear in an
argument list: PostgreSQL's tools read PGPASSWORD from their environment, MariaDB's a private
0600 defaults file whose path is the first argument."""

from __future__ import annotations

import re


def pg_dump_argv(tool: str, snapshot: str) -> list[str]:
    """pg_dump of the exported `snapshot`, custom format, uncompressed (zstd does that)."""
    return [tool, "--format=custom", "--compress=0", f"--snapshot={snapshot}", "--no-password"]


def pg_restore_argv(tool: str, database: str, *, clean: bool) -> list[str]:
    """pg_restore reading stdin into `database`, in one transaction that a failure rolls back."""
    argv = [
        tool,
        f"--dbname={database}",
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        "--single-transaction",
        "--no-password",
    ]
    if clean:
        argv += ["--clean", "--if-exists"]
    return argv


def pg_list_argv(tool: str) -> list[str]:
    """pg_restore --list of a custom-format dump on stdin (reads the whole dump)."""
    return [tool, "--list"]


def mariadb_dump_argv(tool: str, defaults_file: str, database: str) -> list[str]:
    """mariadb-dump of one database in one consistent-snapshot transaction."""
    return [
        tool,
        f"--defaults-extra-file={defaults_file}",
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        database,
    ]


def mariadb_argv(tool: str, defaults_file: str, database: str) -> list[str]:
    """The `mariadb` client reading an SQL dump on stdin into `database`."""
    return [tool, f"--defaults-extra-file={defaults_file}", "--binary-mode", database]


def tool_major(version_text: str) -> int:
    """The major version in `pg_dump --version`-style output (0 when there is none)."""
    match = re.search(r"(\d+)(?:\.\d+)?", version_text)
    return int(match.group(1)) if match else 0


def _mariadb_release(text: str) -> tuple[int, int] | None:
    match = re.search(r"(?:Distrib\s+)?(\d+)\.(\d+)\.\d+-MariaDB", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def mariadb_dump_problem(tool_version: str, server_version: str) -> str | None:
    """Why this mariadb-dump should not dump this server, or None. A MariaDB server newer than
    the client's release may hold what the older dump tool cannot write back faithfully."""
    server = _mariadb_release(server_version)
    tool = _mariadb_release(tool_version)
    if server is None or tool is None:
        return None  # MySQL, or an unknown format: nothing we can judge
    if tool < server:
        return (
            f"mariadb-dump {tool[0]}.{tool[1]} is older than the server "
            f"({server[0]}.{server[1]}): install a mariadb-client of {server[0]}.{server[1]} "
            "or newer"
        )
    return None


def pg_dump_problem(tool_version: str, server_major: int) -> str | None:
    """Why this pg_dump cannot dump a server of `server_major`, or None (older ones refuse)."""
    tool = tool_major(tool_version)
    if tool < server_major:
        return (
            f"the server runs PostgreSQL {server_major}; pg_dump {server_major} or newer is "
            f"needed (install postgresql-client-{server_major}); found {tool or 'none'}"
        )
    return None
