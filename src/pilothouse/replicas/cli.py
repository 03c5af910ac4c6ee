"""pilothouse replicas: a service's running instances."""

from __future__ import annotations

from typing import Annotated

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api
from pilothouse.console import print_json, print_table

COLUMNS = [
    "id",
    "version",
    "status",
    "health",
    "pid",
    "port",
    "restarts",
    "cpu %",
    "memory MB",
    "limits",
    "last restart reason",
]


def replicas(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name or id.")],
    env: EnvOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List a service's replicas: status, pid, port, restarts, CPU, memory, how limits are
    enforced (cgroup or sampling) and why each last failed or was restarted."""
    rows = api(ctx).request("GET", f"/services/{service}/replicas", params={"environment": env})
    if as_json:
        print_json(rows)
        return
    live = [r for r in rows if r["status"] not in ("stopped",)] or rows
    table = [
        {
            "id": r["id"][:8],
            "version": r.get("version"),
            "status": r["status"],
            "health": r["health"],
            "pid": r["pid"],
            "port": (r.get("ports") or {}).get("http"),
            "restarts": r["restart_count"],
            "cpu %": None if r["cpu_percent"] is None else f"{r['cpu_percent']:.1f}",
            "memory MB": None if r["memory_mb"] is None else f"{r['memory_mb']:.1f}",
            "limits": r.get("enforcement"),
            "last restart reason": r.get("restart_reason"),
        }
        for r in live
    ]
    print_table(table, COLUMNS, title="replicas")
