"""pilothouse cert list|show|track|renew|untrack and pilothouse domain add|list|show|verify|rm."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.console import out, print_json, print_table

cert_app = typer.Typer(
    help="Certificates: track TLS endpoints by real handshakes, issue and renew with ACME; "
    "expiry alerts.",
    no_args_is_help=True,
)
domain_app = typer.Typer(
    help="Domains: register a service's custom domain, create its DNS records, verify them.",
    no_args_is_help=True,
)


def _day(value: str | None) -> str:
    return value[:10] if value else "-"


def _cert_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **r,
            "id": r["id"][:8],
            "endpoint": f"{r['host']}:{r['port']}",
            "expires": _day(r["expires_at"]),
            "days_left": "-" if r["days_left"] is None else r["days_left"],
            "authority": r["certificate_authority"] or "-",
        }
        for r in rows
    ]


def _print_cert(cert: dict[str, Any]) -> None:
    out.print(f"{cert['domain']}  [{cert['status']}]  {cert['id']}", markup=False)
    for key in (
        "host",
        "port",
        "server_name",
        "starttls",
        "issuer",
        "subject",
        "certificate_authority",
        "issued_at",
        "expires_at",
        "days_left",
        "chain_valid",
        "chain_error",
        "certificate_hash",
        "alert_days",
        "last_checked_at",
        "last_error",
    ):
        if cert.get(key) not in (None, "", []):
            out.print(f"  {key}: {cert[key]}", markup=False)
    if cert.get("sans"):
        out.print(f"  sans: {', '.join(cert['sans'])}", markup=False)


@cert_app.command("list")
def cert_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List tracked certificates (status, expiry, days left)."""
    rows = api(ctx).request("GET", "/certificates")
    if as_json:
        print_json(rows)
        return
    print_table(
        _cert_rows(rows),
        ["id", "domain", "endpoint", "status", "authority", "expires", "days_left"],
        title="certificates",
    )


@cert_app.command("show")
def cert_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Certificate id, id prefix, or domain.")],
    as_json: JsonFlag = False,
) -> None:
    """One certificate: issuer, subject, SANs, validity, chain, hash, alert levels."""
    cert = api(ctx).request("GET", f"/certificates/{ref}")
    if as_json:
        print_json(cert)
        return
    _print_cert(cert)


@cert_app.command("track")
def cert_track(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="host or host:port (default port 443).")],
    server_name: Annotated[
        str | None, typer.Option("--sni", help="Server name to ask for (default: host).")
    ] = None,
    starttls: Annotated[
        str, typer.Option(help="none, or smtp (STARTTLS before the handshake).")
    ] = "none",
    env: Annotated[str | None, typer.Option("--env", help="Environment it belongs to.")] = None,
    alert_days: Annotated[
        str | None,
        typer.Option(help="Days before expiry to alert at, comma-separated (default 30,14,7,3,1)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Track the certificate served at an endpoint; it is checked at once."""
    host, _, port = endpoint.rpartition(":") if ":" in endpoint else (endpoint, "", "")
    if port and not port.isdigit():
        raise typer.BadParameter("port must be a number", param_hint="ENDPOINT")
    levels = None
    if alert_days:
        try:
            levels = [int(d) for d in alert_days.split(",") if d.strip()]
        except ValueError:
            raise typer.BadParameter("comma-separated days", param_hint="--alert-days") from None
    body = {
        "host": host,
        "port": int(port) if port else 443,
        "server_name": server_name,
        "starttls": starttls,
        "environment": env,
        "alert_days": levels,
    }
    cert = api(ctx).request("POST", "/certificates", json_body=body)
    if as_json:
        print_json(cert)
        return
    _print_cert(cert)


@cert_app.command("renew")
def cert_renew(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Certificate id, id prefix, or domain.")],
    as_json: JsonFlag = False,
) -> None:
    """Renew an issued (ACME) certificate now; check an observed one again."""
    cert = api(ctx).request("POST", f"/certificates/{ref}/renew")
    if as_json:
        print_json(cert)
        return
    _print_cert(cert)


@cert_app.command("issue")
def cert_issue(
    ctx: typer.Context,
    domain: Annotated[str, typer.Argument(help="A verified domain (name or id).")],
    as_json: JsonFlag = False,
) -> None:
    """Issue a certificate for a verified domain from the ACME directory (renewed
    automatically before expiry)."""
    cert = api(ctx).request("POST", f"/domains/{domain}/certificate")
    if as_json:
        print_json(cert)
        return
    _print_cert(cert)


@cert_app.command("untrack")
def cert_untrack(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Certificate id, id prefix, or domain.")],
) -> None:
    """Stop tracking a certificate."""
    api(ctx).request("DELETE", f"/certificates/{ref}")
    out.print(f"stopped tracking {ref}", markup=False)


def _print_domain(domain: dict[str, Any]) -> None:
    out.print(
        f"{domain['domain_name']}  [{domain['dns_status']}]  service {domain['app_target']}",
        markup=False,
    )
    if domain["dns_status"] != "verified":
        out.print("  create these DNS records:", markup=False)
    for record in domain["records"]:
        out.print(f"    {record['type']:<5} {record['name']}  {record['value']}", markup=False)
    if domain.get("last_error"):
        out.print(f"  last check: {domain['last_error']}", markup=False)
    if domain.get("verified_at"):
        out.print(f"  verified at: {domain['verified_at']}", markup=False)


@domain_app.command("add")
def domain_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Full domain, e.g. api.example.com.")],
    service: Annotated[str, typer.Option("--service", help="Service it serves.")],
    env: Annotated[str | None, typer.Option("--env", help="The service's environment.")] = None,
    root: Annotated[
        str | None, typer.Option(help="Root domain when not the last two labels (example.co.uk).")
    ] = None,
    cdn: Annotated[bool, typer.Option(help="The domain is served through a CDN.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Register a domain for a service and print the DNS records to create."""
    body = {
        "domain": name,
        "service": service,
        "environment": env,
        "root": root,
        "cdn_enabled": cdn,
    }
    domain = api(ctx).request("POST", "/domains", json_body=body)
    if as_json:
        print_json(domain)
        return
    _print_domain(domain)


@domain_app.command("list")
def domain_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List domains and their DNS status."""
    rows = api(ctx).request("GET", "/domains")
    if as_json:
        print_json(rows)
        return
    shown = [{**r, "id": r["id"][:8], "verified": _day(r["verified_at"])} for r in rows]
    print_table(
        shown, ["id", "domain_name", "app_target", "dns_status", "verified"], title="domains"
    )


@domain_app.command("show")
def domain_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Domain name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """One domain: its status, records to create and last check."""
    domain = api(ctx).request("GET", f"/domains/{ref}")
    if as_json:
        print_json(domain)
        return
    _print_domain(domain)


@domain_app.command("verify")
def domain_verify(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Domain name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """Resolve a domain's records now (a failed domain starts over)."""
    domain = api(ctx).request("POST", f"/domains/{ref}/verify")
    if as_json:
        print_json(domain)
        return
    _print_domain(domain)


@domain_app.command("rm")
def domain_rm(
    ctx: typer.Context, ref: Annotated[str, typer.Argument(help="Domain name or id.")]
) -> None:
    """Remove a domain."""
    api(ctx).request("DELETE", f"/domains/{ref}")
    out.print(f"removed {ref}", markup=False)
