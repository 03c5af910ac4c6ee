"""pilothouse backup ... and pilothouse keys ...

Two kinds of commands:
- over HTTP (like every other command): `backup target ...`, `backup list|show|queue`;
- on the pilothouse host (they read the store and the master key directly, and work even when
  the server is down): `backup run|verify|drill|restore|self|cleanup` and `keys rotate|list`;
- anywhere, with no server and no store: `backup restore --from-file OBJECT --key-file FILE`.
"""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from pilothouse.cli_support import DataDir, DbUrl, JsonFlag, api, local_settings
from pilothouse.client import CliError
from pilothouse.console import err, out, print_json, print_record, print_table

if TYPE_CHECKING:
    from pilothouse.access import Principal

app = typer.Typer(
    help=(
        "Database backups: targets, backups, verification, restore drills, restores.\n\n"
        "`target`, `list`, `show` and `queue` talk to the server. `run`, `verify`, `drill`, "
        "`restore`, `self` and `cleanup` run here, on the pilothouse host: they need the data "
        "directory (master key) and the store (PILOTHOUSE_DATA_DIR, PILOTHOUSE_DATABASE_URL). "
        "`restore --from-file OBJECT --key-file FILE` needs neither: disaster recovery from a "
        "backup object and the key file alone."
    ),
    no_args_is_help=True,
)
target_app = typer.Typer(help="What to back up, when and where (over HTTP).", no_args_is_help=True)
app.add_typer(target_app, name="target")

T = TypeVar("T")

TARGET_COLUMNS = [
    "name",
    "engine",
    "database_name",
    "schedule",
    "drill_schedule",
    "enabled",
    "last_verified",
    "freshness",
]


def _age(seconds: int | None) -> str:
    from pilothouse.backups.freshness import describe_age  # the store's modules load lazily

    return "never" if seconds is None else f"{describe_age(seconds)} ago"


def _freshness(row: dict[str, Any]) -> dict[str, Any]:
    """A target row with its newest verified backup's age and "overdue" / "ok" / "-"."""
    state = "overdue" if row.get("overdue") else ("ok" if row.get("due_by") else "-")
    return {**row, "last_verified": _age(row.get("last_verified_age_seconds")), "freshness": state}


BACKUP_COLUMNS = [
    "name",
    "id",
    "status",
    "triggered_by",
    "gfs_class",
    "backup_size_mb",
    "compressed_size_mb",
    "integrity_check_passed",
    "restore_test_passed",
    "retention_expires_at",
]


# -- over HTTP ---------------------------------------------------------------------------------


def _retention(values: list[str] | None) -> dict[str, int] | None:
    if not values:
        return None
    policy = {}
    for item in values:
        klass, _, days = item.partition("=")
        if not days.isdigit():
            raise CliError(f"--keep {item!r}: use CLASS=DAYS, e.g. --keep daily=14")
        policy[klass] = int(days)
    return policy


@target_app.command("add")
def target_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Target name.")],
    dsn: Annotated[
        str,
        typer.Option(
            envvar="PILOTHOUSE_BACKUP_DSN",
            prompt="Database URL",
            hide_input=True,
            help=(
                "postgresql://user:pass@host/db, mariadb://user:pass@host/db or "
                "sqlite:////path.db (or PILOTHOUSE_BACKUP_DSN; prompted, hidden, when absent)."
            ),
        ),
    ],
    env: Annotated[str | None, typer.Option("--env", "-e", help="Environment.")] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            help="Backup cron (UTC), default 0 2 * * * (none in a development environment); "
            "'' for no scheduled backups."
        ),
    ] = None,
    drill_schedule: Annotated[
        str,
        typer.Option(help="Drill cron (UTC), default the last Sunday 04:00; '' for no drills."),
    ] = "0 4 * * L0",
    directory: Annotated[
        str | None, typer.Option("--dir", help="Local directory (default <data_dir>/backups).")
    ] = None,
    s3_bucket: Annotated[str | None, typer.Option(help="Store in this S3 bucket.")] = None,
    s3_prefix: Annotated[str | None, typer.Option(help="S3 key prefix.")] = None,
    s3_endpoint: Annotated[
        str | None, typer.Option(help="S3-compatible endpoint URL (default AWS).")
    ] = None,
    s3_region: Annotated[str | None, typer.Option(help="S3 region.")] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(help="Days kept per class, repeatable: daily=30 weekly=183 monthly=365."),
    ] = None,
    retries: Annotated[int, typer.Option(help="Retries of a failed backup.")] = 3,
    retry_delay: Annotated[int, typer.Option(help="Seconds between retries.")] = 300,
    before_deploy: Annotated[
        bool, typer.Option("--before-deploy", help="Back up before each deployment in --env.")
    ] = False,
    content_checksums: Annotated[
        bool,
        typer.Option(
            "--content-checksums/--no-content-checksums",
            help="Record per-table content checksums that drills compare (default on).",
        ),
    ] = True,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Test the connection and the dump tool's version before saving (default on).",
        ),
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Allow a schedule in a development environment.")
    ] = False,
) -> None:
    """Register a database to back up (admin). The DSN is stored encrypted.

    The server first connects to the database and checks its dump tool against it; a failure
    saves nothing (--no-check skips the test)."""
    storage: dict[str, Any] = {"kind": "local"}
    if directory:
        storage["path"] = str(Path(directory).resolve())
    if s3_bucket:
        storage = {
            "kind": "s3",
            "bucket": s3_bucket,
            "prefix": s3_prefix,
            "endpoint_url": s3_endpoint,
            "region": s3_region,
        }
    body: dict[str, Any] = {
        "name": name,
        "dsn": dsn,
        "environment": env,
        "drill_schedule": drill_schedule or None,
        "storage": {k: v for k, v in storage.items() if v is not None},
        "retention": _retention(keep),
        "max_retries": retries,
        "retry_delay_seconds": retry_delay,
        "before_deploy": before_deploy,
        "content_checksums": content_checksums,
        "force": force,
    }
    if schedule is not None:
        body["schedule"] = schedule or None
    target = api(ctx).request(
        "POST", "/backup-targets", json_body=body, params={"check": str(check).lower()}
    )
    out.print(
        f"added {target['engine']} target {target['name']} ({target['dsn']}), "
        f"schedule {target['schedule'] or 'none'}, drill {target['drill_schedule'] or 'none'}",
        markup=False,
    )


@target_app.command("list")
def target_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List backup targets with their freshness: the age of each one's newest verified backup,
    and "overdue" when it is older than the schedule interval plus the grace."""
    rows = api(ctx).request("GET", "/backup-targets")
    if as_json:
        print_json(rows)
    else:
        print_table([_freshness(r) for r in rows], TARGET_COLUMNS, title="backup targets")


@target_app.command("show")
def target_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Target name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """One target (its DSN with the password hidden)."""
    row = api(ctx).request("GET", f"/backup-targets/{ref}")
    print_json(row) if as_json else print_record(row)


@target_app.command("set")
def target_set(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Target name or id.")],
    schedule: Annotated[str | None, typer.Option(help="Backup cron; '' for none.")] = None,
    drill_schedule: Annotated[str | None, typer.Option(help="Drill cron; '' for none.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Run schedules or not.")
    ] = None,
    before_deploy: Annotated[
        bool | None,
        typer.Option("--before-deploy/--no-before-deploy", help="Back up before deployments."),
    ] = None,
    keep: Annotated[
        list[str] | None, typer.Option(help="Days kept per class: daily=30 ...")
    ] = None,
    content_checksums: Annotated[
        bool | None,
        typer.Option(
            "--content-checksums/--no-content-checksums",
            help="Record per-table content checksums that drills compare.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Allow a schedule in a development environment.")
    ] = False,
) -> None:
    """Change a target's schedules, retention or switches (admin)."""
    body: dict[str, Any] = {}
    if schedule is not None:
        body["schedule"] = schedule or None
    if drill_schedule is not None:
        body["drill_schedule"] = drill_schedule or None
    if enabled is not None:
        body["enabled"] = enabled
    if before_deploy is not None:
        body["before_deploy"] = before_deploy
    if keep:
        body["retention"] = _retention(keep)
    if content_checksums is not None:
        body["content_checksums"] = content_checksums
    if not body:
        raise CliError("nothing to change: pass --schedule, --enabled, --keep, ...")
    if force:
        body["force"] = True
    row = api(ctx).request("PATCH", f"/backup-targets/{ref}", json_body=body)
    out.print(f"updated target {row['name']}")


@target_app.command("rm")
def target_rm(
    ctx: typer.Context, ref: Annotated[str, typer.Argument(help="Target name or id.")]
) -> None:
    """Remove a target (admin). Its backups stay until their retention ends."""
    api(ctx).request("DELETE", f"/backup-targets/{ref}")
    out.print(f"removed target {ref}")


@app.command("list")
def list_(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
    status: Annotated[str | None, typer.Option(help="in_progress, completed or failed.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List backups, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if target:
        params["target"] = target
    if status:
        params["status"] = status
    rows = api(ctx).request("GET", "/backups", params=params)
    print_json(rows) if as_json else print_table(rows, BACKUP_COLUMNS, title="backups")


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Backup id or name.")],
    as_json: JsonFlag = False,
) -> None:
    """Everything recorded about one backup."""
    row = api(ctx).request("GET", f"/backups/{ref}")
    print_json(row) if as_json else print_record(row)


@app.command("queue")
def queue(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Target name or id.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it has finished.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 3600.0,
) -> None:
    """Queue a manual backup for the server's worker (operator)."""
    client = api(ctx)
    row = client.request("POST", f"/backup-targets/{target}/backups", json_body={})
    out.print(f"queued {row['name']} ({row['id']})")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    with err.status(f"waiting for {row['name']}..."):
        while row["status"] == "in_progress" or (
            row["status"] == "completed" and row["integrity_check_passed"] is None
        ):
            if time.monotonic() > deadline:
                raise CliError(f"{row['name']} is still {row['status']} after {timeout:.0f}s")
            time.sleep(1.0)
            row = client.request("GET", f"/backups/{row['id']}")
    _report(row)


def _report(row: dict[str, Any]) -> None:
    if row["status"] != "completed":
        retry = f"; retry at {row['next_attempt_at']}" if row.get("next_attempt_at") else ""
        raise CliError(f"backup {row['name']} failed: {row['error_message']}{retry}")
    out.print(
        f"{row['name']} completed: {row['size_bytes']:,} bytes dumped, "
        f"{row['stored_bytes']:,} stored, {row['duration_seconds']}s",
        markup=False,
    )
    verdict = "passed" if row["integrity_check_passed"] else "FAILED"
    out.print(f"integrity check {verdict}: {row['integrity_detail']}", markup=False)
    if not row["integrity_check_passed"]:
        raise CliError(f"the integrity check of {row['name']} failed")


# -- on the host ---------------------------------------------------------------------------------


def _local_actor() -> Principal:
    from pilothouse.access import system_actor

    return system_actor(f"cli:{getpass.getuser()}")


def _run_local(
    data_dir: Path | None, database_url: str | None, work: Callable[[Any], Awaitable[T]]
) -> T:
    from pilothouse.backups.jobs import BackupContext
    from pilothouse.core.db import Database

    settings = local_settings(data_dir, database_url)

    async def main() -> T:
        db = Database(settings.effective_database_url())
        ctx = BackupContext(
            db,
            settings.data_dir,
            master_key=settings.master_key,
            lease_seconds=settings.lease_seconds,
            store_url=settings.effective_database_url(),
        )
        try:
            return await work(ctx)
        finally:
            await db.dispose()

    return asyncio.run(main())


@contextmanager
def _bytes_progress(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


async def _resolve(ctx: Any, ref: str) -> Any:
    from pilothouse.backups import service

    async with ctx.db.session(write=False) as session:
        return await service.get_backup(session, _local_actor(), ref)


async def _take_local(ctx: Any, target_ref: str | None) -> dict[str, Any]:
    from pilothouse.backups import jobs, service
    from pilothouse.backups.schemas import BackupRead

    actor = _local_actor()
    async with ctx.db.session() as session:
        if target_ref is None:
            target = await service.ensure_self_target(session, actor, ctx.keyring(), ctx.store_url)
        else:
            target = await service.get_target(session, actor, target_ref)
        backup = await service.new_backup(
            session, target, ctx.storage(target), trigger="manual", actor=actor
        )
    out.print(f"backing up {target.name} ({target.dsn_display}) as {backup.name}", markup=False)
    with _bytes_progress(f"dumping {target.database_name}", None) as advance:
        done = await jobs.run_backup(ctx, backup.id, progress=advance)
    return BackupRead.model_validate(done).model_dump(mode="json")


@app.command("run")
def run(
    target: Annotated[str, typer.Argument(help="Target name or id.")],
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Take a manual backup now, here (with progress), then verify it."""
    _report(_run_local(data_dir, database_url, lambda ctx: _take_local(ctx, target)))


@app.command("self")
def self_(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Back up pilothouse's own store (SQLite online backup API, or pg_dump), then verify it.

    The first run registers a target named `pilothouse` (daily at 02:00 UTC from then on)."""
    _report(_run_local(data_dir, database_url, lambda ctx: _take_local(ctx, None)))


def _check(data_dir: Path | None, database_url: str | None, ref: str, kind: str) -> None:
    """Run the integrity check or the restore drill on one backup and report it in one line."""
    from pilothouse.backups import jobs

    job, doing, label, passed, detail = {
        "verify": (
            jobs.verify_backup,
            "verifying",
            "integrity check",
            "integrity_check_passed",
            "integrity_detail",
        ),
        "drill": (
            jobs.drill_backup,
            "restoring into a scratch database:",
            "restore drill",
            "restore_test_passed",
            "restore_test_detail",
        ),
    }[kind]

    async def work(ctx: Any) -> Any:
        backup = await _resolve(ctx, ref)
        with err.status(f"{doing} {backup.name}..."):
            return await job(ctx, backup.id)

    row = _run_local(data_dir, database_url, work)
    if not getattr(row, passed):
        raise CliError(f"{row.name}: {label} FAILED: {getattr(row, detail)}")
    out.print(f"{row.name}: {label} passed: {getattr(row, detail)}", markup=False)


@app.command("verify")
def verify(
    ref: Annotated[str, typer.Argument(help="Backup id or name.")],
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Re-run the integrity check: every chunk's tag, the checksum, the engine's own listing."""
    _check(data_dir, database_url, ref, "verify")


@app.command("drill")
def drill(
    ref: Annotated[str, typer.Argument(help="Backup id or name.")],
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Restore drill: restore into a scratch database, compare each table's row count and
    content checksum with those recorded, drop the scratch."""
    _check(data_dir, database_url, ref, "drill")


@app.command("restore")
def restore(
    ref: Annotated[
        str | None, typer.Argument(help="Backup id or name (not with --from-file).")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            envvar="PILOTHOUSE_RESTORE_DSN",
            help="Database URL to restore into (or PILOTHOUSE_RESTORE_DSN).",
        ),
    ] = None,
    to_file: Annotated[
        Path | None,
        typer.Option(
            "--to-file",
            help="With --from-file: write the plain dump here (mode 0600) instead of restoring.",
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help=(
                "A backup object (.dump.zst.enc) copied off its storage: restore it with no "
                "server, no store and no data directory (disaster recovery)."
            ),
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="With --from-file: the master key file (default: PILOTHOUSE_MASTER_KEY).",
        ),
    ] = None,
    checksum: Annotated[
        str | None,
        typer.Option(help="With --from-file: the object's recorded SHA-256, checked too."),
    ] = None,
    clean: Annotated[
        bool, typer.Option("--clean", help="Replace what the target database (or file) holds.")
    ] = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Restore a backup into a database. Refuses a database that is not empty unless --clean.

    The whole object is checked (every chunk's tag, the final chunk, the checksum) before the
    target can keep anything: PostgreSQL restores in one transaction, SQLite replaces the file
    only when complete, and MariaDB's dump is verified into a private temporary file ($TMPDIR)
    before the `mariadb` client reads it. An error says whether the target was touched.

    Disaster recovery, with nothing but the object and the key file:
    `pilothouse backup restore --from-file OBJECT --key-file master.key --to DSN`
    (or `--to-file dump` for the plain pg_dump/mariadb-dump/SQLite file)."""
    if from_file is not None:
        if ref is not None:
            raise CliError("give a backup name or --from-file, not both")
        out.print(_restore_file(from_file, key_file, to, to_file, clean, checksum), markup=False)
        return
    if ref is None:
        raise CliError("name the backup to restore (or restore an object with --from-file)")
    if to_file is not None or key_file is not None or checksum is not None:
        raise CliError("--to-file, --key-file and --checksum go with --from-file")
    if to is None:
        raise CliError("--to DSN is needed: the database to restore into")
    dsn = to

    async def work(ctx: Any) -> str:
        from pilothouse.backups import jobs

        backup = await _resolve(ctx, ref)
        with _bytes_progress(f"restoring {backup.name}", backup.stored_bytes) as advance:
            return await jobs.restore_backup(
                ctx, backup.id, dsn, actor=_local_actor(), clean=clean, progress=advance
            )

    out.print(_run_local(data_dir, database_url, work), markup=False)


def _restore_file(
    obj: Path,
    key_file: Path | None,
    to: str | None,
    to_file: Path | None,
    clean: bool,
    checksum: str | None,
) -> str:
    """Disaster recovery: restore an object with the key file alone (no server, no store)."""
    import os

    from pilothouse.backups.recovery import restore_object
    from pilothouse.core.crypto import CryptoError, load_keyring

    master_key = None if key_file is not None else os.environ.get("PILOTHOUSE_MASTER_KEY")
    if key_file is None and not master_key:
        raise CliError("--from-file needs --key-file FILE (or PILOTHOUSE_MASTER_KEY)")
    if not obj.is_file():
        raise CliError(f"{obj} is not a file")
    try:
        keyring = load_keyring(master_key, key_file or Path("/nonexistent"))
    except (CryptoError, OSError, ValueError) as exc:
        raise CliError(f"--key-file: {exc}") from None
    with _bytes_progress(f"restoring {obj.name}", obj.stat().st_size) as advance:
        return restore_object(
            obj,
            keyring,
            to=to,
            to_file=to_file,
            clean=clean,
            checksum=checksum.lower() if checksum else None,
            progress=advance,
        )


@app.command("cleanup")
def cleanup(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Delete backups whose retention ended (objects first, then records) and orphaned uploads.
    The worker runs this daily at 03:00 UTC."""

    async def work(ctx: Any) -> dict[str, int]:
        from pilothouse.backups import jobs

        return await jobs.cleanup(ctx)

    figures = _run_local(data_dir, database_url, work)
    out.print(
        f"expired {figures['expired']} backup(s), removed {figures['orphans']} orphan(s), "
        f"{figures['errors']} error(s)"
    )
    if figures["errors"]:
        raise CliError("cleanup met errors; see the log")
