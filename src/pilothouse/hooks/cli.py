"""pilothouse hook add|list|rm: deploy webhooks over HTTP (admin). The secret is read from a
hidden prompt or a pipe, never from the command line, and never shown again."""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_table

app = typer.Typer(
    help="Deploy webhooks: a signed push (GitHub or generic) registers and deploys (admin).",
    no_args_is_help=True,
)
RULE_RE = re.compile(r"^(branch|tag):([^=]+)=([^/]+)/(.+)$")


def parse_rule(text: str) -> dict[str, str]:
    """`branch:main=prod/web` or `tag:v*=prod/web` as a rule."""
    found = RULE_RE.match(text)
    if not found:
        raise CliError(
            f"--rule {text!r}: write it as branch:PATTERN=ENV/SERVICE or tag:PATTERN=ENV/SERVICE"
        )
    kind, pattern, env, service = found.groups()
    return {kind: pattern, "environment": env, "service": service}


def _secret() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("hook secret (shared with the sender)", hide_input=True))
    line = sys.stdin.readline().strip()
    if not line:
        raise CliError(
            "no secret on stdin: pipe it in, e.g. `openssl rand -hex 32 | pilothouse hook add ...`"
        )
    return line


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Hook name: its URL is /api/v1/hooks/NAME.")],
    rule: Annotated[
        list[str],
        typer.Option(
            "--rule",
            help="branch:PATTERN=ENV/SERVICE or tag:PATTERN=ENV/SERVICE (glob; first match wins; "
            "repeatable).",
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Create a deploy hook; the secret comes from a hidden prompt or stdin."""
    body = {"name": name, "secret": _secret(), "rules": [parse_rule(r) for r in rule]}
    hook = api(ctx).request("POST", "/hooks", json_body=body)
    if as_json:
        print_json(hook)
        return
    url = f"<server>/api/v1/hooks/{hook['name']}"
    out.print(f"created hook {hook['name']}: POST {url}", markup=False)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List deploy hooks and their rules."""
    rows = api(ctx).request("GET", "/hooks")
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["rules"] = ", ".join(
            f"{'branch' if 'branch' in r else 'tag'}:{r.get('branch') or r.get('tag')}"
            f"={r['environment']}/{r['service']}"
            for r in row["rules"]
        )
    print_table(rows, ["name", "rules", "is_active", "last_delivery_at"], title="hooks")


@app.command("rm")
def rm(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Hook name.")]) -> None:
    """Delete a deploy hook (its deliveries are forgotten)."""
    api(ctx).request("DELETE", f"/hooks/{name}")
    out.print(f"deleted hook {name}")
