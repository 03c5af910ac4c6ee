"""pilothouse service create|list|show|update|scale|stop|start|delete."""

from __future__ import annotations

from typing import Annotated

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api, json_object
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_record, print_table
from pilothouse.deployments.follow import follow_to_outcome

app = typer.Typer(help="Services: deployable units inside an environment.", no_args_is_help=True)
COLUMNS = ["name", "status", "target_replicas", "cpu_cores", "memory_mb", "image", "command"]


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Service name (1-100 of A-Z a-z 0-9 - _).")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment it belongs to.")],
    image: Annotated[str | None, typer.Option(help="Container image (1-500 chars).")] = None,
    command: Annotated[
        str | None,
        typer.Option(help="Start command; {port} and {version} are substituted (admin only)."),
    ] = None,
    replicas: Annotated[int, typer.Option(help="Target replicas, 1-100.")] = 1,
    cpu: Annotated[float, typer.Option(help="CPU cores, 0.5-32.")] = 0.5,
    memory: Annotated[int, typer.Option(help="Memory in MB, 512-65536.")] = 512,
    gpu: Annotated[int, typer.Option(help="GPU units, 0-8.")] = 0,
    storage: Annotated[int, typer.Option(help="Storage in GB, 1-1000.")] = 1,
    public_url: Annotated[str | None, typer.Option(help="Public URL.")] = None,
    router_port: Annotated[
        int | None,
        typer.Option(
            help="Serve the replicas behind nginx on this stable port; refused (409) when "
            "another service or another process on the host holds it."
        ),
    ] = None,
    health_path: Annotated[
        str, typer.Option(help="Readiness check: HTTP path each replica must answer 2xx on.")
    ] = "/health",
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds a new replica has to become ready.")
    ] = 30.0,
    config: Annotated[
        str | None,
        typer.Option(help="More driver settings as JSON, e.g. '{\"max_surge\": 2}'."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a service (operator)."""
    driver_config: dict[str, object] = dict(json_object(config, "config") or {})
    if router_port:
        driver_config.update(router="nginx", router_port=router_port)
    body = {
        "environment": env,
        "name": name,
        "image": image,
        "command": command,
        "target_replicas": replicas,
        "public_url": public_url,
        "driver_config": driver_config,
        "health_check": {"path": health_path, "timeout": ready_timeout},
        "resources": {
            "cpu_cores": cpu,
            "memory_mb": memory,
            "gpu_units": gpu,
            "storage_gb": storage,
        },
    }
    svc = api(ctx).request("POST", "/services", json_body=body)
    if as_json:
        print_json(svc)
    else:
        out.print(f"created service {svc['name']} in {env} (id {svc['id']}, {svc['status']})")


@app.command("list")
def list_(ctx: typer.Context, env: EnvOption = None, as_json: JsonFlag = False) -> None:
    """List services you can see."""
    rows = api(ctx).request("GET", "/services", params={"environment": env})
    print_json(rows) if as_json else print_table(rows, COLUMNS, title="services")


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name or id.")],
    env: EnvOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one service."""
    svc = api(ctx).request("GET", f"/services/{name}", params={"environment": env})
    print_json(svc) if as_json else print_record(svc)


@app.command("update")
def update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name or id.")],
    env: EnvOption = None,
    image: Annotated[str | None, typer.Option(help="New container image.")] = None,
    command: Annotated[
        str | None,
        typer.Option(help="New start command; {port} and {version} are substituted (admin only)."),
    ] = None,
    cpu: Annotated[float | None, typer.Option(help="CPU cores, 0.5-32.")] = None,
    memory: Annotated[int | None, typer.Option(help="Memory in MB, 512-65536.")] = None,
    gpu: Annotated[int | None, typer.Option(help="GPU units, 0-8.")] = None,
    storage: Annotated[int | None, typer.Option(help="Storage in GB, 1-1000.")] = None,
    public_url: Annotated[str | None, typer.Option(help="Public URL.")] = None,
    config: Annotated[
        str | None,
        typer.Option(
            help="Driver settings as JSON; keys other than rollout tuning are admin only."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a service's settings (operator; the command and host settings are admin only).

    Only the options given change; the next deployment uses them."""
    body: dict[str, object] = {}
    if image is not None:
        body["image"] = image
    if command is not None:
        body["command"] = command
    if public_url is not None:
        body["public_url"] = public_url
    driver_config = json_object(config, "config")
    if driver_config is not None:
        body["driver_config"] = driver_config
    resources = {
        key: value
        for key, value in (
            ("cpu_cores", cpu),
            ("memory_mb", memory),
            ("gpu_units", gpu),
            ("storage_gb", storage),
        )
        if value is not None
    }
    if resources:
        body["resources"] = resources
    if not body:
        raise CliError("nothing to change: give at least one option (see --help)")
    client = api(ctx)
    ref = client.request("GET", f"/services/{name}", params={"environment": env})["id"]
    svc = client.request("PATCH", f"/services/{ref}", json_body=body)
    if as_json:
        print_json(svc)
    else:
        out.print(f"updated service {svc['name']}: {', '.join(sorted(body))}")


@app.command("scale")
def scale(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name or id.")],
    replicas: Annotated[int, typer.Argument(help="Target replicas, 1-100.")],
    env: EnvOption = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the scaling.")] = True,
) -> None:
    """Set a service's target replicas (operator); a live service is scaled at once."""
    client = api(ctx)
    ref = client.request("GET", f"/services/{name}", params={"environment": env})["id"]
    svc = client.request("POST", f"/services/{ref}/scale", json_body={"target_replicas": replicas})
    out.print(f"{svc['name']}: target replicas {svc['target_replicas']}")
    if svc.get("deployment_id"):
        out.print(f"scaling: deployment {svc['deployment_id']}")
        if wait:
            follow_to_outcome(client, svc["deployment_id"])


ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why (kept in the history and the audit trail).")
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Follow the stop or start to its outcome.")
]


@app.command("stop")
def stop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name or id.")],
    env: EnvOption = None,
    reason: ReasonOption = None,
    wait: WaitOption = True,
) -> None:
    """Stop a service (operator): drain and stop its replicas, remove its router entry.

    It shows as `stopped` (not down) in `health`, stopped time is not downtime, and deploys to
    it are refused until `pilothouse service start`."""
    _act(ctx, "stop", name, env, reason, wait)


@app.command("start")
def start(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name or id.")],
    env: EnvOption = None,
    reason: ReasonOption = None,
    wait: WaitOption = True,
) -> None:
    """Start a stopped service (operator) at its live release, health-gated."""
    _act(ctx, "start", name, env, reason, wait)


def _act(
    ctx: typer.Context, verb: str, name: str, env: str | None, reason: str | None, wait: bool
) -> None:
    client = api(ctx)
    svc = client.request(
        "POST",
        f"/services/{name}/{verb}",
        params={"environment": env},
        json_body={"reason": reason},
    )
    out.print(
        f"{verb} of {svc['name']} recorded: deployment {svc['deployment_id']}"
        + ("" if wait else f" (follow it: pilothouse logs {svc['deployment_id']} --follow)"),
        markup=False,
    )
    if wait:
        follow_to_outcome(client, svc["deployment_id"])


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name or id.")],
    env: EnvOption = None,
) -> None:
    """Soft-delete a service (operator); its name is free again, its history stays."""
    client = api(ctx)
    ref = client.request("GET", f"/services/{name}", params={"environment": env})["id"]
    client.request("DELETE", f"/services/{ref}")
    out.print(f"deleted service {name}")
