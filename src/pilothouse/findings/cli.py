"""pilothouse scan import|run|list|show|schedule and pilothouse findings
list|show|accept|false-positive|reopen|summary|export|override."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from pilothouse.cli_support import EnvOption, JsonFlag, api
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_record, print_table

scan_app = typer.Typer(
    help="Security scans: import reports (SARIF, bandit, pip-audit, semgrep), run and schedule "
    "bandit or pip-audit, list and show scans.",
    no_args_is_help=True,
)
findings_app = typer.Typer(
    help="Security findings: list, show, triage (accept risk, false positive, reopen), "
    "summaries, SARIF export, security gate overrides.",
    no_args_is_help=True,
)
IMPORT_TIMEOUT = 600.0
_DAYS = re.compile(r"^(\d+)d$")


def _summary_line(scan: dict[str, Any]) -> str:
    s = scan.get("summary") or {}
    changes = scan.get("changes") or {}
    counts = (
        f"{s.get('total_findings', 0)} finding(s): {s.get('critical_findings', 0)} critical, "
        f"{s.get('high_findings', 0)} high, {s.get('medium_findings', 0)} medium, "
        f"{s.get('low_findings', 0)} low; score {s.get('compliance_score', '-')}"
    )
    moved = ", ".join(f"{v} {k}" for k, v in changes.items() if v)
    return f"scan {scan['id'][:8]} {scan['status']}: {counts}" + (f" ({moved})" if moved else "")


@scan_app.command("import")
def import_report(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The report (JSON), streamed to the server.")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment the scan belongs to.")],
    artifact: Annotated[
        str | None, typer.Option("--artifact", help="Artifact version that was scanned.")
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="Service (when the version is ambiguous).")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="What was scanned (default: the service).")
    ] = None,
    scan_type: Annotated[
        str | None, typer.Option("--type", help="dependency, sast, container or iac.")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="sarif, bandit, pip-audit or semgrep (detected).")
    ] = None,
    partial: Annotated[
        bool, typer.Option("--partial", help="Resolve nothing the report does not mention.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import a scan report; findings are deduplicated against earlier scans of the target."""
    if not file.is_file():
        raise CliError(f"{file} is not a file")
    with file.open("rb") as stream:
        scan = api(ctx).request(
            "POST",
            "/scans/import",
            params={
                "environment": env,
                "artifact": artifact,
                "service": service,
                "target": target,
                "type": scan_type,
                "format": fmt,
                "partial": "true" if partial else None,
            },
            content=stream,
            timeout=IMPORT_TIMEOUT,
        )
    if as_json:
        print_json(scan)
        return
    out.print(_summary_line(scan), markup=False)


@scan_app.command("run")
def run(
    ctx: typer.Context,
    scan_type: Annotated[
        str, typer.Option("--type", help="sast (bandit) or dependency (pip-audit).")
    ],
    service: Annotated[str, typer.Option(help="Service to scan (its cwd / requirements.txt).")],
    env: EnvOption = None,
    artifact: Annotated[str | None, typer.Option(help="Artifact version being scanned.")] = None,
    path: Annotated[
        str | None, typer.Option(help="Directory or requirements file on the host (admin).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the scan to finish.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Run bandit or pip-audit as a worker job; shows the summary when done."""
    client = api(ctx)
    scan = client.request(
        "POST",
        "/scans/run",
        json_body={
            "type": scan_type,
            "service": service,
            "environment": env,
            "artifact": artifact,
            "path": path,
        },
    )
    if wait:
        import time

        deadline = time.monotonic() + IMPORT_TIMEOUT
        while scan["status"] in ("pending", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
            scan = client.request("GET", f"/scans/{scan['id']}")
    if as_json:
        print_json(scan)
        return
    if scan["status"] == "failed":
        raise CliError(f"scan {scan['id'][:8]} failed: {scan.get('error_message')}")
    out.print(_summary_line(scan), markup=False)


@scan_app.command("list")
def list_scans(
    ctx: typer.Context,
    env: EnvOption = None,
    scan_type: Annotated[str | None, typer.Option("--type", help="Scan type.")] = None,
    status: Annotated[str | None, typer.Option(help="Scan status.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List scans, newest first."""
    rows = api(ctx).request(
        "GET", "/scans", params={"environment": env, "type": scan_type, "status": status}
    )
    if as_json:
        print_json(rows)
        return
    shown = [
        {
            **r,
            "id": r["id"][:8],
            "findings": (r.get("summary") or {}).get("total_findings", "-"),
            "score": (r.get("summary") or {}).get("compliance_score", "-"),
        }
        for r in rows
    ]
    print_table(
        shown,
        [
            "id",
            "type",
            "environment",
            "target",
            "artifact",
            "tool",
            "status",
            "findings",
            "score",
            "started_at",
        ],
        title="scans",
    )


@scan_app.command("show")
def show_scan(
    ctx: typer.Context,
    scan_id: Annotated[str, typer.Argument(help="Scan id or prefix.")],
    as_json: JsonFlag = False,
) -> None:
    """A scan: its target, status, summary and what it changed."""
    scan = api(ctx).request("GET", f"/scans/{scan_id}")
    if as_json:
        print_json(scan)
        return
    print_record({k: v for k, v in scan.items() if k not in ("summary", "changes")})
    out.print(_summary_line(scan), markup=False)


@scan_app.command("schedule")
def schedule(
    ctx: typer.Context,
    scan_type: Annotated[str, typer.Option("--type", help="sast or dependency.")],
    service: Annotated[str, typer.Option(help="Service to scan from its cwd.")],
    cron: Annotated[str, typer.Option(help="Cron expression (UTC), e.g. '0 3 * * *'.")],
    env: EnvOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Scan a service on a cron schedule (the worker runs it)."""
    row = api(ctx).request(
        "POST",
        "/scan-schedules",
        json_body={"type": scan_type, "service": service, "cron": cron, "environment": env},
    )
    if as_json:
        print_json(row)
        return
    out.print(f"scheduled {scan_type} scans of {service}: {cron}", markup=False)


@findings_app.command("list")
def list_findings(
    ctx: typer.Context,
    env: EnvOption = None,
    severity: Annotated[
        list[str] | None, typer.Option(help="low, medium, high or critical (repeat).")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="open, resolved, accepted_risk or false_positive (repeat)."),
    ] = None,
    artifact: Annotated[str | None, typer.Option(help="Seen in a scan of this version.")] = None,
    scan: Annotated[str | None, typer.Option(help="Reported by this scan.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List findings, most severe first."""
    rows = api(ctx).request(
        "GET",
        "/findings",
        params={
            "environment": env,
            "severity": severity or [],
            "status": status or [],
            "artifact": artifact,
            "scan": scan,
            "limit": limit,
        },
    )
    if as_json:
        print_json(rows)
        return
    shown = [
        {**r, "id": r["id"][:8], "sla": "BREACHED" if r["sla_breached"] else r["sla_due_at"][:10]}
        for r in rows
    ]
    print_table(
        shown,
        ["id", "severity", "status", "rule_id", "title", "location", "cwe_id", "tool", "sla"],
        title="findings",
    )


@findings_app.command("show")
def show_finding(
    ctx: typer.Context,
    finding_id: Annotated[str, typer.Argument(help="Finding id or prefix.")],
    as_json: JsonFlag = False,
) -> None:
    """A finding with its remediation, first/last seen and the scans that reported it."""
    row = api(ctx).request("GET", f"/findings/{finding_id}")
    if as_json:
        print_json(row)
        return
    print_record(row)


def _until(value: str) -> str:
    found = _DAYS.match(value.strip())
    if found:
        return (datetime.now(UTC) + timedelta(days=int(found.group(1)))).isoformat()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CliError("--until must be a number of days (30d) or an ISO date") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def _triage(
    ctx: typer.Context, finding_id: str, action: str, body: dict[str, Any], as_json: bool
) -> None:
    row = api(ctx).request("POST", f"/findings/{finding_id}/{action}", json_body=body)
    if as_json:
        print_json(row)
        return
    out.print(f"finding {row['id'][:8]} ({row['rule_id']}) is now {row['status']}", markup=False)


@findings_app.command("accept")
def accept(
    ctx: typer.Context,
    finding_id: Annotated[str, typer.Argument(help="Finding id or prefix.")],
    reason: Annotated[str, typer.Option(help="Why the risk is accepted (audited).")],
    until: Annotated[str, typer.Option(help="Expiry: days (30d) or an ISO date.")] = "30d",
    as_json: JsonFlag = False,
) -> None:
    """Accept the risk of a finding until a date (it reopens then)."""
    _triage(ctx, finding_id, "accept", {"reason": reason, "until": _until(until)}, as_json)


@findings_app.command("false-positive")
def false_positive(
    ctx: typer.Context,
    finding_id: Annotated[str, typer.Argument(help="Finding id or prefix.")],
    reason: Annotated[str, typer.Option(help="Why it is not a real issue (audited).")],
    as_json: JsonFlag = False,
) -> None:
    """Mark a finding a false positive."""
    _triage(ctx, finding_id, "false-positive", {"reason": reason}, as_json)


@findings_app.command("reopen")
def reopen(
    ctx: typer.Context,
    finding_id: Annotated[str, typer.Argument(help="Finding id or prefix.")],
    as_json: JsonFlag = False,
) -> None:
    """Reopen a finding (accepted, false positive or resolved)."""
    _triage(ctx, finding_id, "reopen", {}, as_json)


@findings_app.command("summary")
def summary(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")],
    as_json: JsonFlag = False,
) -> None:
    """Open findings of an environment by severity, SLA breaches, compliance score."""
    row = api(ctx).request("GET", "/findings/summary", params={"environment": env})
    if as_json:
        print_json(row)
        return
    print_record(row)


@findings_app.command("export")
def export(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """SARIF 2.1.0 of the open findings of an environment."""
    log = api(ctx).request("GET", "/findings/export", params={"environment": env})
    text = json.dumps(log, indent=2)
    if output is None:
        typer.echo(text)
        return
    output.write_text(text)
    count = sum(len(run["results"]) for run in log["runs"])
    out.print(f"wrote {count} open finding(s) to {output}", markup=False)


@findings_app.command("override")
def override(
    ctx: typer.Context,
    service: Annotated[str, typer.Option(help="Service.")],
    version: Annotated[str, typer.Option(help="Artifact version to let through once.")],
    reason: Annotated[str, typer.Option(help="Why (audited).")],
    env: EnvOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Let the next deployment of an artifact past the security gate (admin, once, audited)."""
    row = api(ctx).request(
        "POST",
        "/gate-overrides",
        json_body={"service": service, "version": version, "reason": reason, "environment": env},
    )
    if as_json:
        print_json(row)
        return
    out.print(
        f"the next deployment of {service} {version} may pass the security gate", markup=False
    )
