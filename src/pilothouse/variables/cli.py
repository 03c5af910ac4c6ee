"""pilothouse vars ...: environment variables over HTTP. Secret values are never printed unless
an admin passes --reveal (and each reveal is audited).

One argument style for every subcommand: the variable's name is the first positional argument
(KEY), the scope is given by options: `--env/-e` (every subcommand but `diff`, whose two
positional environments are what it compares) and `--service/-s` (where a service scope exists);
`--json` prints JSON, `--output/-o` writes a file. Each option has one help text, defined once
below. Older spellings keep working, hidden from --help: `vars check ENV`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.client import CliError
from pilothouse.console import out, print_json, print_table

app = typer.Typer(
    help="Environment variables: encrypted, versioned, masked, validated before each deploy.",
    no_args_is_help=True,
)

ENV_HELP = "Environment name or id."
SERVICE_HELP = "Service name or id: its own scope, which overrides the environment's."
KEY_HELP = "Variable name (A-Z a-z 0-9 _)."
REVEAL_HELP = "Show secret values (admin; each reveal is audited)."
OUTPUT_HELP = "Write to this file (mode 0600) instead of printing."

EnvOpt = Annotated[str, typer.Option("--env", "-e", help=ENV_HELP)]
ServiceOpt = Annotated[str | None, typer.Option("--service", "-s", help=SERVICE_HELP)]
KeyArg = Annotated[str, typer.Argument(metavar="KEY", help=KEY_HELP)]
RevealFlag = Annotated[bool, typer.Option("--reveal", help=REVEAL_HELP)]


def _params(service: str | None, **extra: Any) -> dict[str, Any]:
    params = {k: v for k, v in extra.items() if v is not None}
    if service:
        params["service"] = service
    return params


@app.command("list")
def list_(
    ctx: typer.Context,
    env: EnvOpt,
    service: ServiceOpt = None,
    reveal: RevealFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """List the variables of an environment (or a service's effective set); secrets as ********."""
    rows = api(ctx).request(
        "GET", f"/environments/{env}/vars", params=_params(service, reveal=reveal or None)
    )
    if as_json:
        print_json(rows)
        return
    print_table(
        rows, ["key", "value", "is_secret", "version", "scope", "updated_by"], title="variables"
    )


@app.command("set")
def set_(
    ctx: typer.Context,
    assignment: Annotated[
        str,
        typer.Argument(
            metavar="KEY[=VALUE]",
            help="KEY=VALUE, or KEY alone to be prompted (hidden) for the value or read it from "
            "a pipe.",
        ),
    ],
    env: EnvOpt,
    service: ServiceOpt = None,
    secret: Annotated[bool, typer.Option("--secret", help="Mask it everywhere.")] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="Store it visible, even if it was a secret (audited).")
    ] = False,
) -> None:
    """Set a variable; a change is a new version. A secret stays a secret unless --plain; a new
    variable whose name or value looks secret is one. Prefer `KEY` alone for secrets (no shell
    history)."""
    key, sep, value = assignment.partition("=")
    if not sep:
        value = _read_value(key)
    body = {"value": value, "is_secret": True if secret else None, "plain": plain}
    body["service"] = service
    row = api(ctx).request("PUT", f"/environments/{env}/vars/{key}", json_body=body)
    state = f"version {row['version']}" if row["changed"] else "unchanged"
    out.print(f"{key} set in {env}{f'/{service}' if service else ''} ({state})", markup=False)


def _read_value(key: str) -> str:
    """The value from a hidden prompt on a terminal, or the first line of piped input (getpass
    would warn that it cannot hide what is not typed)."""
    if sys.stdin.isatty():
        return str(typer.prompt(f"value of {key}", hide_input=True))
    line = sys.stdin.readline()
    if not line:
        raise CliError(f"no value for {key}: give KEY=VALUE or pipe the value in")
    return line.rstrip("\r\n")


@app.command("unset")
def unset(ctx: typer.Context, key: KeyArg, env: EnvOpt, service: ServiceOpt = None) -> None:
    """Remove a variable (its history stays)."""
    api(ctx).request("DELETE", f"/environments/{env}/vars/{key}", params=_params(service))
    out.print(f"{key} unset in {env}{f'/{service}' if service else ''}", markup=False)


@app.command("history")
def history(
    ctx: typer.Context,
    key: KeyArg,
    env: EnvOpt,
    service: ServiceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """List every version of a variable: who, when, what kind of change (never values)."""
    rows = api(ctx).request(
        "GET", f"/environments/{env}/vars/{key}/history", params=_params(service)
    )
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["version", "action", "is_secret", "actor", "created_at"], title="versions")


@app.command("revert")
def revert(
    ctx: typer.Context,
    key: KeyArg,
    env: EnvOpt,
    to: Annotated[int, typer.Option("--to", help="Version whose value to restore.")],
    service: ServiceOpt = None,
) -> None:
    """Give a variable the value it had at version N again (as a new version)."""
    row = api(ctx).request(
        "POST", f"/environments/{env}/vars/{key}/revert", json_body={"to": to, "service": service}
    )
    out.print(f"{key} reverted to the value of version {to} (now version {row['version']})")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help=".env file to read ('-' for stdin).")],
    env: EnvOpt,
    service: ServiceOpt = None,
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="Also treat KEY as secret (repeatable).")
    ] = None,
    plain: Annotated[
        list[str] | None,
        typer.Option("--plain", help="Store KEY visible, even if it is a secret (repeatable)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would change.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
) -> None:
    """Import a .env file: shows which keys are added or changed, then applies them in one
    transaction. Existing secrets stay secrets (unless --plain); keys whose name looks secret
    (*_KEY, *_TOKEN, *SECRET*, *PASS*, AUTH*, JWT*, SESSION*, STRIPE*...) or whose value is a
    URL with a password become secrets."""
    from pilothouse.variables.dotenv import DotenvError, parse

    text = sys.stdin.read() if str(file) == "-" else _read(file)
    try:
        values = parse(text)
    except DotenvError as exc:
        raise CliError(f"{file}: {exc}") from None
    body = {
        "values": values,
        "secret_keys": sorted(set(secret or [])),
        "plain_keys": sorted(set(plain or [])),
        "service": service,
        "dry_run": True,
    }
    client = api(ctx)
    plan = client.request("POST", f"/environments/{env}/vars-import", json_body=body)
    secrets = set(plan["secret"])
    for word, keys in (("add", plan["added"]), ("change", plan["changed"])):
        for key in keys:
            out.print(f"  {word:<6} {key}{'  (secret)' if key in secrets else ''}", markup=False)
    out.print(
        f"{len(plan['added'])} to add, {len(plan['changed'])} to change, "
        f"{len(plan['unchanged'])} unchanged"
    )
    if dry_run or not (plan["added"] or plan["changed"]):
        return
    if not yes and not typer.confirm("apply?", default=False):
        raise CliError("nothing applied")
    body["dry_run"] = False
    client.request("POST", f"/environments/{env}/vars-import", json_body=body)
    out.print(f"applied to {env}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


@app.command("export")
def export(
    ctx: typer.Context,
    env: EnvOpt,
    service: ServiceOpt = None,
    reveal: RevealFlag = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help=OUTPUT_HELP)] = None,
) -> None:
    """Print (or write) the variables as a .env file; secrets only with --reveal."""
    from pilothouse.variables.dotenv import render

    rows = api(ctx).request(
        "GET", f"/environments/{env}/vars", params=_params(service, reveal=reveal or None)
    )
    values = {r["key"]: r["value"] for r in rows if reveal or not r["is_secret"]}
    comments = {r["key"]: "secret" for r in rows if r["is_secret"] and reveal}
    text = render(values, comments=comments)
    skipped = [r["key"] for r in rows if r["is_secret"] and not reveal]
    if skipped:
        text += "".join(f"# {k}: secret, not exported (use --reveal)\n" for k in skipped)
    _emit(text, output)


@app.command("template")
def template(
    ctx: typer.Context,
    env: EnvOpt,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file (default .env.<environment>.template)."
        ),
    ] = None,
) -> None:
    """Write .env.<environment>.template: every key, non-secret values, secrets left empty."""
    from pilothouse.variables.dotenv import render

    client = api(ctx)
    rows = client.request("GET", f"/environments/{env}/vars")
    required = {r["key"]: r for r in client.request("GET", f"/environments/{env}/requirements")}
    values = {r["key"]: ("" if r["is_secret"] else r["value"]) for r in rows}
    for key in required:
        values.setdefault(key, "")
    comments = {}
    for key in values:
        notes = []
        if key in required:
            req = required[key]
            notes.append("required" if req["required"] else "optional")
            if req["rule"]:
                notes.append(f"format: {req['rule']}")
        if any(r["key"] == key and r["is_secret"] for r in rows):
            notes.append("secret: fill in")
        if notes:
            comments[key] = ", ".join(notes)
    _emit(render(values, comments=comments), output or Path(f".env.{env}.template"))


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        out.out(text, end="", highlight=False)
        return
    import os

    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    out.print(f"wrote {output}")


@app.command("diff")
def diff(
    ctx: typer.Context,
    left: Annotated[str, typer.Argument(metavar="ENV_A", help=ENV_HELP)],
    right: Annotated[str, typer.Argument(metavar="ENV_B", help=ENV_HELP)],
    as_json: JsonFlag = False,
) -> None:
    """Compare two environments: keys missing on either side and keys whose values differ
    (values never shown). Secrets are compared only for admins; for others they are listed as
    not compared. Audited."""
    result = api(ctx).request("GET", "/vars-diff", params={"left": left, "right": right})
    if as_json:
        print_json(result)
        return
    for title, keys in result.items():
        out.print(f"{title.replace('_', ' ')}: {', '.join(keys) if keys else '-'}")


@app.command("check", context_settings={"allow_extra_args": True})
def check(
    ctx: typer.Context,
    env_opt: Annotated[str | None, typer.Option("--env", "-e", help=ENV_HELP)] = None,
    service: ServiceOpt = None,
) -> None:
    """Run the pre-deployment check now: every problem at once (keys and rules, no values)."""
    env = _one_env(env_opt, ctx.args)
    result = api(ctx).request("GET", f"/environments/{env}/vars-check", params=_params(service))
    if result["ok"]:
        out.print(f"{env}: all required variables are set and valid")
        return
    for problem in result["problems"]:
        out.print(f"  {problem}", markup=False)
    raise CliError(f"{env}: {len(result['problems'])} problem(s); deployments will be refused")


@app.command("require")
def require(
    ctx: typer.Context,
    key: KeyArg,
    env: EnvOpt,
    rule: Annotated[
        str | None,
        typer.Option(
            "--rule",
            help="url, https_url, postgres_dsn, redis_url, one_of, semver_or_sha, integer, regex.",
        ),
    ] = None,
    values: Annotated[
        str | None, typer.Option("--values", help="one_of: allowed values, comma-separated.")
    ] = None,
    minimum: Annotated[int | None, typer.Option("--min", help="integer: lowest.")] = None,
    maximum: Annotated[int | None, typer.Option("--max", help="integer: highest.")] = None,
    pattern: Annotated[
        str | None, typer.Option("--pattern", help="regex: the full-match pattern.")
    ] = None,
    optional: Annotated[
        bool, typer.Option("--optional", help="Only check the format when it is set.")
    ] = False,
) -> None:
    """Declare a variable the environment's deployments need, and its format (admin)."""
    args: dict[str, Any] = {}
    if values:
        args["values"] = [v.strip() for v in values.split(",")]
    if minimum is not None:
        args["min"] = minimum
    if maximum is not None:
        args["max"] = maximum
    if pattern is not None:
        args["pattern"] = pattern
    body = {"required": not optional, "rule": rule, "args": args}
    api(ctx).request("PUT", f"/environments/{env}/requirements/{key}", json_body=body)
    out.print(
        f"{env} now {'expects' if optional else 'requires'} {key}{f' ({rule})' if rule else ''}"
    )


@app.command("requirements")
def requirements(ctx: typer.Context, env: EnvOpt, as_json: JsonFlag = False) -> None:
    """List the variables an environment requires, and their formats."""
    rows = api(ctx).request("GET", f"/environments/{env}/requirements")
    print_json(rows) if as_json else print_table(
        rows, ["key", "required", "rule", "args"], title="requirements"
    )


@app.command("unrequire")
def unrequire(ctx: typer.Context, key: KeyArg, env: EnvOpt) -> None:
    """Drop a requirement (admin)."""
    api(ctx).request("DELETE", f"/environments/{env}/requirements/{key}")
    out.print(f"{env} no longer requires {key}")


def _one_env(option: str | None, extra: list[str]) -> str:
    """The environment from --env, or from the older positional spelling `vars check ENV`
    (still accepted, not shown in --help)."""
    if len(extra) > 1:
        raise CliError(f"unexpected arguments {' '.join(extra[1:])!r}: give the environment once")
    legacy = extra[0] if extra else None
    if option and legacy and option != legacy:
        raise CliError(f"two environments given ({legacy!r} and --env {option!r}): give one")
    env = option or legacy
    if not env:
        raise CliError("missing option --env: the environment (name or id)")
    return env
