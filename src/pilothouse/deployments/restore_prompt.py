"""What the CLI says about a rollback's data (deployments/withdata.py): before a rollback with
data, what it will restore and a confirmation; after a rollback without, that a data restore was
available and which backup."""

from __future__ import annotations

from typing import Any

import click
import typer
from rich.filesize import decimal

from pilothouse.client import ApiClient, CliError
from pilothouse.console import out, printable


def _backup(b: dict[str, Any]) -> str:
    size = f", {decimal(b['stored_bytes'])}" if b.get("stored_bytes") else ""
    taken = str(b.get("taken_at") or "")[:19].replace("T", " ")
    return printable(
        f"{b['name']} of {b['target']} (database {b['database']}, taken {taken}{size})"
    )


def confirm_data_restore(
    client: ApiClient, service: str, to: str | None, env: str | None, *, yes: bool
) -> None:
    """Say what `rollback --with-data` will restore and ask (unless `yes`); CliError when
    there is nothing to restore or the user says no."""
    plan = client.request(
        "GET", f"/services/{service}/rollback", params={"to": to, "environment": env}
    )
    data = plan["data_restore"]
    where = f"{plan['service']} from {plan['from_version']} to {plan['to_version']}"
    if not data["available"]:
        raise CliError(f"a rollback of {where} cannot restore data: {data['reason']}")
    out.print(
        f"rolling back {where} restores the data {data['from_version']} migrated from:",
        markup=False,
    )
    for backup in data["backups"]:
        out.print(f"  {_backup(backup)}", markup=False)
    out.print(
        "what its database holds now (rows written since that backup included) is replaced",
        markup=False,
    )
    if yes:
        return
    try:
        agreed = typer.confirm("restore and roll back?", default=False)
    except click.exceptions.Abort:  # no terminal to answer on
        agreed = False
    if not agreed:
        raise CliError("nothing done (pass --yes to confirm without a prompt)")


def data_restore_hint(service: str, rollback: dict[str, Any]) -> None:
    """After a rollback without data: say that a restore was available, and how to run it."""
    data = rollback.get("data_restore") or {}
    if rollback.get("restore_backup_ids") or not data.get("available"):
        return
    names = " ".join(b["name"] for b in data["backups"])
    out.print(
        f"a data restore is available: {data['from_version']} migrated the data after "
        "pre-deployment backup(s) were taken:",
        markup=False,
    )
    for backup in data["backups"]:
        out.print(f"  {_backup(backup)}", markup=False)
    out.print(
        printable(
            f"this rollback leaves the data as it is; `pilothouse rollback {service} "
            f"--with-data` restores it as part of the rollback, or on the pilothouse host: "
            f"`pilothouse backup restore {names} --clean --to DSN`"
        ),
        markup=False,
    )
