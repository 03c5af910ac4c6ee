"""The `pilothouse` command: local setup and serving, plus every feature's commands over HTTP."""

from __future__ import annotations

import gc
import os
import sys
from typing import Annotated

import typer

from pilothouse import __version__
from pilothouse.alerts.cli import app as channel_app
from pilothouse.apply.cli import apply, export, schema
from pilothouse.artifacts.cli import app as artifact_app
from pilothouse.audit.cli import audit
from pilothouse.autoscaling.cli import scaling_app
from pilothouse.backups.cli import app as backup_app
from pilothouse.certificates.cli import cert_app, domain_app
from pilothouse.cli_support import DataDir, DbUrl, local_settings
from pilothouse.client import CliError, save_config
from pilothouse.console import err, out
from pilothouse.deployments.cli import app as deployments_app
from pilothouse.deployments.cli import deploy, diff, rollback
from pilothouse.deployments.cli import logs as deployment_logs
from pilothouse.environments.cli import app as env_app
from pilothouse.errors import PilothouseError
from pilothouse.findings.cli import findings_app, scan_app
from pilothouse.healthchecks.cli import health, incidents, maintenance_app, uptime
from pilothouse.history.cli import history
from pilothouse.hooks.cli import app as hook_app
from pilothouse.metrics.cli import metrics_app
from pilothouse.nodes.cli import node_app
from pilothouse.replicas.cli import replicas
from pilothouse.services.cli import app as service_app
from pilothouse.users.cli import tokens_app, users_app
from pilothouse.variables.cli import app as vars_app

app = typer.Typer(
    name="pilothouse",
    help=(
        "pilothouse: a self-hosted deployment control plane.\n\n"
        "`init`, `serve`, `db`, `keys` and `backup run|verify|drill|restore|self|cleanup` run on "
        "the server host; every other command talks to a server over HTTP (--url or "
        "PILOTHOUSE_URL; token from PILOTHOUSE_TOKEN or the file `init` saved)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="Database schema (runs locally against PILOTHOUSE_DATABASE_URL).", no_args_is_help=True
)
keys_app = typer.Typer(help="The master keyring (on the pilothouse host).", no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"pilothouse {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    url: Annotated[
        str | None,
        typer.Option(
            "--url", envvar="PILOTHOUSE_URL", help="Server URL, e.g. http://127.0.0.1:8600."
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """pilothouse: a self-hosted deployment control plane."""


@app.command()
def init(
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    admin: Annotated[str, typer.Option(help="Name of the first admin user.")] = "admin",
    server_url: Annotated[
        str | None, typer.Option(help="URL the CLI should use (default http://HOST:PORT).")
    ] = None,
    save: Annotated[
        bool, typer.Option("--save/--no-save", help="Save URL and token for the CLI.")
    ] = True,
) -> None:
    """Create the data directory, master key (0600), database and the first admin token."""
    from pilothouse.setup import initialise

    settings = local_settings(data_dir, database_url)
    result = initialise(settings, admin_name=admin)
    url = server_url or f"http://{settings.host}:{settings.port}"
    out.print(f"data directory  {result.data_dir}")
    out.print(f"database        {_safe_url(result.database_url)} (migrated)")
    if result.master_key_path:
        state = "created" if result.created_key else "exists"
        out.print(f"master key      {result.master_key_path} ({state}, mode 0600)")
    else:
        out.print("master key      from PILOTHOUSE_MASTER_KEY")
    if result.run_user:
        state = "created" if result.created_run_user else "exists"
        out.print(f"replicas run as {result.run_user} ({state}; unprivileged)")
    else:
        out.print("replicas run as this user (pilothouse is not root: it cannot switch users)")
    if result.admin_token is None:
        out.print("admin           already exists; its token was shown when it was created")
        out.print("                (issue another with `pilothouse token create`)")
        return
    out.print(f"admin token     {result.admin_token}  (shown once: keep it safe)", markup=False)
    if save:
        path = save_config(url, result.admin_token)
        out.print(f"CLI config      {path} (url {url}, mode 0600)")


def _safe_url(url: str) -> str:
    """A database URL with any password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default PILOTHOUSE_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default PILOTHOUSE_PORT or 8600).")
    ] = None,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log each request.")
    ] = True,
    role: Annotated[
        str | None,
        typer.Option(help="all (default): API and worker; api: API only; worker: loops only."),
    ] = None,
) -> None:
    """Run pilothouse: the API and the worker that carries out deployments and supervises
    replicas. The database is upgraded first."""
    import uvicorn

    from pilothouse.app import create_app

    settings = local_settings(data_dir, database_url)
    if host:
        settings.host = host
    if port:
        settings.port = port
    if role:
        if role not in ("all", "api", "worker"):
            raise CliError("--role must be all, api or worker")
        settings.role = role
    out.print(f"pilothouse {__version__} on http://{settings.host}:{settings.port}")
    out.print(f"database {_safe_url(settings.effective_database_url())}")
    app = create_app(settings)
    # What is loaded now lives as long as the process: keep it out of the collector's full
    # passes, which otherwise walk it again and again under a large request (a 5,000-sample
    # metrics push allocates ~100,000 objects; see docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=access_log,
        # pilothouse's logging (core/logging.py) masks every line, tracebacks included;
        # uvicorn's own configuration would print them raw.
        log_config=None,
        # Followers of a live deployment hold a stream open; do not wait on them forever.
        timeout_graceful_shutdown=5,
    )


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Upgrade the schema (to the newest revision by default)."""
    from pilothouse import migrations

    settings = local_settings(data_dir, database_url)
    url = settings.effective_database_url()
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(url, revision)
    out.print(f"database at revision {migrations.current_revision(url)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for none.")],
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Downgrade the schema (destructive: tables of later revisions are dropped)."""
    from pilothouse import migrations

    url = local_settings(data_dir, database_url).effective_database_url()
    migrations.downgrade(url, revision)
    out.print(f"database at revision {migrations.current_revision(url) or 'base'}")


@db_app.command("current")
def db_current(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Print the schema revision and the newest one this version ships."""
    from pilothouse import migrations

    url = local_settings(data_dir, database_url).effective_database_url()
    out.print(
        f"current {migrations.current_revision(url) or 'none'}, head {migrations.head_revision()}"
    )


@keys_app.command("rotate")
def keys_rotate(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Add a new master key and re-encrypt every stored variable and DSN with it (in batches,
    one transaction each). Backups keep the key they were written with: old keys stay in the
    key file, so older backups stay restorable."""
    import asyncio

    from pilothouse.core.crypto import load_keyring, rotate_key_file
    from pilothouse.core.db import Database
    from pilothouse.rotation import reseal_all

    settings = local_settings(data_dir, database_url)
    if settings.master_key:
        raise CliError(
            "the master key comes from PILOTHOUSE_MASTER_KEY: rotate by moving to the key file "
            "(unset it and put the key in <data_dir>/master.key), then run this again"
        )
    kid, count = rotate_key_file(settings.master_key_path)
    out.print(f"new current key {kid} ({count} keys in {settings.master_key_path})")

    async def reseal() -> int:
        db = Database(settings.effective_database_url())
        try:
            return await reseal_all(db, load_keyring(None, settings.master_key_path))
        finally:
            await db.dispose()

    with err.status("re-encrypting stored values..."):
        rewritten = asyncio.run(reseal())
    out.print(f"re-encrypted {rewritten} stored value(s) with key {kid}")
    out.print(f"back up {settings.master_key_path} now: without it the data cannot be read")


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """Key ids in the keyring (never the keys), the current one marked."""
    from pilothouse.core.crypto import CryptoError, load_keyring

    settings = local_settings(data_dir, None)
    try:
        ring = load_keyring(settings.master_key, settings.master_key_path)
    except CryptoError as exc:
        raise CliError(str(exc)) from None
    for kid in ring.keys:
        out.print(f"{kid.hex()}{'  (current)' if kid == ring.current else ''}")


app.add_typer(db_app, name="db")
app.add_typer(env_app, name="env")
app.add_typer(service_app, name="service")
app.add_typer(artifact_app, name="artifact")
app.add_typer(deployments_app, name="deployments")
app.add_typer(users_app, name="user")
app.add_typer(tokens_app, name="token")
app.command("deploy")(deploy)
app.command("rollback")(rollback)
app.command("diff")(diff)
app.command("replicas")(replicas)
app.command("logs")(deployment_logs)
app.command("history")(history)
app.command("health")(health)
app.command("uptime")(uptime)
app.command("incidents")(incidents)
app.command("audit")(audit)
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(channel_app, name="channel")
app.add_typer(backup_app, name="backup")
app.add_typer(keys_app, name="keys")
app.add_typer(vars_app, name="vars")
app.add_typer(metrics_app, name="metrics")
app.add_typer(scan_app, name="scan")
app.add_typer(findings_app, name="findings")
app.add_typer(cert_app, name="cert")
app.add_typer(domain_app, name="domain")
app.add_typer(scaling_app, name="scaling")
app.add_typer(hook_app, name="hook")
app.command("apply")(apply)
app.command("export")(export)
app.command("schema")(schema)
app.add_typer(node_app, name="node")


def main() -> None:
    """Entry point: every failure becomes one readable line and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except CliError as exc:
        err.print(f"error: {exc.message}", markup=False)
        sys.exit(exc.exit_code)
    except PilothouseError as exc:
        err.print(f"error: {exc.message}", markup=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if (message := _usage_message(exc)) is not None:
            err.print(f"error: {message}", markup=False)
            sys.exit(getattr(exc, "exit_code", 2))
        if os.environ.get("PILOTHOUSE_DEBUG"):
            raise
        from pilothouse.core.store import unreachable

        if (reason := unreachable(exc)) is not None:
            err.print(f"error: the store is unreachable ({reason})", markup=False)
            sys.exit(1)
        err.print(f"error: {type(exc).__name__}: {_one_line(exc)}", markup=False)
        sys.exit(1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "unexpected failure (set PILOTHOUSE_DEBUG=1 for details)"


def _usage_message(exc: Exception) -> str | None:
    """A command-line usage error (click's, or the copy of click Typer ships) as one line: the
    message and where to read more, never the exception's class name; None for other errors."""
    format_message = getattr(exc, "format_message", None)
    if not callable(format_message) or not isinstance(getattr(exc, "exit_code", None), int):
        return None
    message = " ".join(str(format_message()).split())
    ctx = getattr(exc, "ctx", None)
    command_path = getattr(ctx, "command_path", None)
    return f"{message} (see `{command_path} --help`)" if command_path else message
