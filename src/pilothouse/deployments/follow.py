"""Following a deployment live in the terminal: a progress bar per replica, streamed logs."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from pilothouse.client import ApiClient, CliError
from pilothouse.console import out, printable

STATE_DONE = {"running": 1, "stopped": 1}


def _log_line(line: dict[str, Any]) -> str:
    stamp = str(line.get("timestamp", ""))[11:19]
    level, source = printable(str(line.get("level", ""))), printable(str(line.get("source", "")))
    return f"{stamp} {level:<5} [{source}] {printable(str(line.get('message', '')))}"


def follow(client: ApiClient, deployment_id: str, *, quiet: bool = False) -> dict[str, Any]:
    """Stream one deployment to its end; returns the `end` event's data."""
    result: dict[str, Any] = {}
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        TextColumn("{task.fields[state]}"),
        console=out,
        transient=False,
        disable=quiet,
    ) as progress:
        bars: dict[str, Any] = {}
        for event, data in client.events(f"/deployments/{deployment_id}/events"):
            if event == "log" and not quiet:
                progress.console.print(_log_line(data), markup=False, highlight=False)
            elif event == "replica":
                rid = str(data["id"])
                label = f"replica {rid[:8]} {data.get('status')}"
                done = 1 if data.get("status") == "running" else 0
                state = data.get("status", "")
                if data.get("ports", {}).get("http"):
                    state += f" :{data['ports']['http']}"
                if rid not in bars:
                    bars[rid] = progress.add_task(label, total=1, completed=done, state=state)
                else:
                    progress.update(bars[rid], description=label, completed=done, state=state)
            elif event == "end":
                result = data
                break
    return result


def follow_to_outcome(client: ApiClient, deployment_id: str, *, quiet: bool = False) -> None:
    """Follow a deployment (and its automatic rollback); raise CliError unless it succeeded."""
    end = follow(client, deployment_id, quiet=quiet)
    status = end.get("status")
    if status == "success":
        out.print(
            f"deployment {deployment_id} succeeded ({end.get('instances_deployed')} replicas)"
        )
        return
    reason = end.get("error_message") or status
    rollback = end.get("rollback_deployment")
    if rollback:
        out.print(f"deployment failed: {reason}; automatic rollback {rollback}")
        back = follow(client, rollback, quiet=quiet)
        raise CliError(
            f"deployment {deployment_id} failed ({reason}); "
            f"rollback {rollback} ended {back.get('status')}"
        )
    raise CliError(f"deployment {deployment_id} {status}: {reason}")
