"""Following a deployment live in the terminal: a progress bar per replica, streamed logs.

Read at 3 a.m.: a run of the same log line (same level, source and message; only the time
differs) prints once, then `... x N (first to last)` when the run ends, so a replica answering
503 to every readiness check takes two lines, not a hundred. The outcome and its reason are
printed as soon as the deployment ends (before any automatic rollback is followed) and again as
the last line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from pilothouse.client import ApiClient, CliError
from pilothouse.console import out, printable

STATE_DONE = {"running": 1, "stopped": 1}


def _log_line(line: dict[str, Any]) -> str:
    stamp = str(line.get("timestamp", ""))[11:19]
    level, source = printable(str(line.get("level", ""))), printable(str(line.get("source", "")))
    return f"{stamp} {level:<5} [{source}] {printable(str(line.get('message', '')))}"


def _stamp(line: dict[str, Any]) -> str:
    return str(line.get("timestamp", ""))[11:19]


class Collapser:
    """Streams log lines, holding back the repeats of the line last shown (pure, no I/O)."""

    def __init__(self, render: Callable[[dict[str, Any]], str] | None = None) -> None:
        self._render = render or _log_line
        self._key: tuple[str, str, str] | None = None
        self._first = ""
        self._last: dict[str, Any] = {}
        self._count = 0

    def feed(self, line: dict[str, Any]) -> list[str]:
        """The text lines to print now for this log line."""
        key = (str(line.get("level")), str(line.get("source")), str(line.get("message")))
        if key == self._key:
            self._count += 1
            self._last = line
            return []
        shown = self.flush()
        self._key, self._first, self._last, self._count = key, _stamp(line), line, 1
        return [*shown, self._render(line)]

    def flush(self) -> list[str]:
        """What the run in progress still owes: the repeated line again, or `... x N`."""
        count, self._count, self._key = self._count, 0, None
        if count == 2:
            return [self._render(self._last)]
        if count > 2:
            return [f"... x {count} ({self._first} to {_stamp(self._last)})"]
        return []


def collapse(
    lines: Iterable[dict[str, Any]], render: Callable[[dict[str, Any]], str] | None = None
) -> list[str]:
    """Log lines as printed, runs of three or more of the same line collapsed."""
    collapser = Collapser(render)
    shown = [text for line in lines for text in collapser.feed(line)]
    return shown + collapser.flush()


def outcome_line(deployment_id: str, deployment: dict[str, Any]) -> str:
    """`deployment ID succeeded (N replicas)` or `deployment ID failed: reason`."""
    status = str(deployment.get("status"))
    if status == "success" and deployment.get("event_type") == "stop":
        return f"deployment {deployment_id} succeeded: the service is stopped"
    if status == "success":
        return (
            f"deployment {deployment_id} succeeded "
            f"({deployment.get('instances_deployed')} replicas)"
        )
    reason = deployment.get("error_message") or deployment.get("rollback_reason")
    text = f"deployment {deployment_id} {status}"
    return printable(f"{text}: {reason}" if reason else text)


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
        collapser = Collapser()

        def show(texts: list[str]) -> None:
            for text in texts:
                progress.console.print(text, markup=False, highlight=False)

        for event, data in client.events(f"/deployments/{deployment_id}/events"):
            if event == "log" and not quiet:
                show(collapser.feed(data))
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
        if not quiet:
            show(collapser.flush())
    return result


def follow_to_outcome(client: ApiClient, deployment_id: str, *, quiet: bool = False) -> None:
    """Follow a deployment (and its automatic rollback); raise CliError unless it succeeded.

    A failure is stated as soon as it is known and again as the last line (the CliError)."""
    end = follow(client, deployment_id, quiet=quiet)
    rollback = end.get("rollback_deployment")
    if rollback:  # its automatic rollback may have marked it rolled_back already: it failed
        end = {**end, "status": "failed"}
    outcome = outcome_line(deployment_id, end)
    out.print(outcome, markup=False, highlight=False)
    if end.get("status") == "success":
        return
    if rollback:
        out.print(f"automatic rollback {rollback} follows", markup=False, highlight=False)
        back = follow(client, rollback, quiet=quiet)
        raise CliError(f"{outcome}; automatic rollback {rollback} ended {back.get('status')}")
    raise CliError(outcome)
