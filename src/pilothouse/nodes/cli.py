"""pilothouse node list|show: nodes with allocation vs capacity."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.console import out, print_json, print_table

node_app = typer.Typer(
    help="Nodes: where replicas run, their capacity and what is allocated.", no_args_is_help=True
)
COLUMNS = ["name", "status", "replicas", "cpu", "memory MB", "gpu", "storage GB", "labels"]


def _of(node: dict[str, Any], key: str) -> str:
    used, total = node["allocated"][key], node["capacity"][key]
    return f"{used:g}/{total:g}"


def _row(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": node["name"],
        "status": node["status"],
        "replicas": node["replicas"],
        "cpu": _of(node, "cpu_cores"),
        "memory MB": _of(node, "memory_mb"),
        "gpu": _of(node, "gpu_units"),
        "storage GB": _of(node, "storage_gb"),
        "labels": ",".join(f"{k}={v}" for k, v in sorted(node["labels"].items())) or "-",
    }


@node_app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every node: allocated/capacity of CPU, memory, GPUs and storage."""
    rows = api(ctx).request("GET", "/nodes")
    if as_json:
        print_json(rows)
        return
    print_table([_row(n) for n in rows], COLUMNS, title="nodes (allocated/capacity)")


@node_app.command("show")
def show(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="Node name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """One node: allocated/capacity/free per resource and its live replicas."""
    data = api(ctx).request("GET", f"/nodes/{node}")
    if as_json:
        print_json(data)
        return
    out.print(
        f"node {data['name']} ({data['hostname']}), {data['status']}, {data['replicas']} replica(s)"
    )
    print_table(
        [
            {
                "resource": key,
                "allocated": f"{data['allocated'][key]:g}",
                "capacity": f"{data['capacity'][key]:g}",
                "free": f"{data['free'][key]:g}",
            }
            for key in ("cpu_cores", "memory_mb", "gpu_units", "storage_gb")
        ],
        ["resource", "allocated", "capacity", "free"],
        title="allocation",
    )
    replicas = [
        {
            "id": r["id"][:8],
            "service": r["service"],
            "status": r["status"],
            "version": r["version"],
            "container": (r["container_id"] or "")[:12] or None,
        }
        for r in data["replica_list"]
    ]
    print_table(replicas, ["id", "service", "status", "version", "container"], title="replicas")
