"""pilothouse node list|show|add|remove: nodes with allocation vs capacity; hosts over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_table
from pilothouse.nodes.hosts import parse_target

node_app = typer.Typer(
    help="Nodes: where replicas run, their capacity and what is allocated.", no_args_is_help=True
)
COLUMNS = [
    "name",
    "address",
    "transport",
    "status",
    "replicas",
    "cpu",
    "memory MB",
    "gpu",
    "storage GB",
    "labels",
]


def _of(node: dict[str, Any], key: str) -> str:
    used, total = node["allocated"][key], node["capacity"][key]
    return f"{used:g}/{total:g}"


def _where(node: dict[str, Any]) -> str:
    if node["transport"] == "ssh":
        return f"{node['ssh_user']}@{node['address']}:{node['ssh_port']}"
    return str(node.get("address") or node["hostname"])


def _row(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": node["name"],
        "address": _where(node),
        "transport": node["transport"],
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
    reason = f" ({data['status_reason']})" if data.get("status_reason") else ""
    out.print(
        f"node {data['name']} ({_where(data)}, {data['transport']}), {data['status']}{reason}, "
        f"{data['replicas']} replica(s)"
    )
    if data.get("host_key_fingerprint"):
        out.print(f"host key {data['host_key_fingerprint']}")
    software = ", ".join(f"{k} {v}" for k, v in sorted(data["software"].items()) if v)
    if software:
        out.print(f"software: {software}")
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


def _labels(values: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--label must be KEY=VALUE, not {item!r}")
        labels[key] = value
    return labels


@node_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Node name (1-100 of A-Z a-z 0-9 _ -).")],
    target: Annotated[
        str, typer.Option("--ssh", help="Where to log in: USER@HOST[:PORT] (port 22 by default).")
    ],
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            help="The client private key file (no passphrase); sent to pilothouse, which "
            "keeps it sealed with its master key.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    trust: Annotated[
        str | None,
        typer.Option(
            "--trust",
            help="The host key's SHA256 fingerprint you checked on the host. Without it the "
            "first contact is refused and shows the fingerprint to check.",
        ),
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="KEY=VALUE label (repeatable).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a host reached over SSH (admin): verify its host key, detect capacity and
    python3/podman, store it with the key sealed."""
    try:
        user, host, port = parse_target(target)
    except ValueError as exc:
        raise CliError(f"--ssh: {exc}") from None
    try:
        private_key = key.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(
            f"--key: cannot read {key}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    body = {
        "name": name,
        "address": host,
        "ssh_user": user,
        "ssh_port": port,
        "private_key": private_key,
        "trust": trust,
        "labels": _labels(label),
    }
    node = api(ctx).request("POST", "/nodes", json_body=body)
    if as_json:
        print_json(node)
        return
    cap = node["capacity"]
    software = ", ".join(f"{k} {v}" for k, v in sorted(node["software"].items()) if v) or "none"
    out.print(
        f"node {node['name']} added ({_where(node)}, host key {node['host_key_fingerprint']}): "
        f"{cap['cpu_cores']:g} CPU, {cap['memory_mb']:g} MB memory, {cap['storage_gb']:g} GB "
        f"storage; {software}"
    )


@node_app.command("remove")
def remove(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="Node name or id.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Remove an unreachable host although replicas lost with it were not stopped "
            "there yet (it is gone for good, or you stopped them on it).",
        ),
    ] = False,
) -> None:
    """Remove a host reached over SSH (admin); refused while live replicas run on it, and
    while replicas lost with it may still run there unfenced (unless --force)."""
    api(ctx).request("DELETE", f"/nodes/{node}", params={"force": "true"} if force else None)
    out.print(f"node {node} removed")
