"""pilothouse user create|list, and pilothouse token create|list|revoke."""

from __future__ import annotations

from typing import Annotated

import typer

from pilothouse.cli_support import JsonFlag, api
from pilothouse.console import out, print_json, print_table

users_app = typer.Typer(help="Users and their roles (admin).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens (admin); a token is shown once.", no_args_is_help=True)


@users_app.command("create")
def create_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[
        str, typer.Option(help="viewer, deployer (CI; grant it environments), operator or admin.")
    ] = "viewer",
    email: Annotated[str | None, typer.Option(help="Contact address.")] = None,
    no_token: Annotated[bool, typer.Option("--no-token", help="Do not issue a token.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a user and print their first token (shown once)."""
    body = {"name": name, "role": role, "email": email, "with_token": not no_token}
    user = api(ctx).request("POST", "/users", json_body=body)
    if as_json:
        print_json(user)
        return
    out.print(f"created user {user['name']} ({user['role']})")
    if user.get("token"):
        out.print(f"token (shown once): {user['token']['token']}", markup=False)


@users_app.command("list")
def list_users(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List users."""
    rows = api(ctx).request("GET", "/users")
    print_json(rows) if as_json else print_table(
        rows, ["name", "role", "email", "is_active", "created_at"], title="users"
    )


@tokens_app.command("create")
def create_token(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="User name or id; default: you.")] = None,
    name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
    expires_in_days: Annotated[int | None, typer.Option(help="Lifetime in days.")] = None,
    ingest: Annotated[
        str | None,
        typer.Option(
            help="Make it an ingest token for this environment (name or id): it may push "
            "metrics there and do nothing else."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a token; it is printed once and stored only as a hash."""
    body = {
        "user": user,
        "name": name,
        "expires_in_days": expires_in_days,
        "ingest_environment": ingest,
    }
    token = api(ctx).request("POST", "/tokens", json_body=body)
    if as_json:
        print_json(token)
        return
    out.print(f"token {token['id']} ({token['name']}), shown once:")
    out.print(token["token"], markup=False)


@tokens_app.command("list")
def list_tokens(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List tokens (never their values)."""
    rows = api(ctx).request("GET", "/tokens", params={"user": user})
    columns = ["id", "name", "prefix", "scope", "created_at", "last_used_at", "expires_at"]
    columns.append("revoked_at")
    print_json(rows) if as_json else print_table(rows, columns, title="tokens")


@tokens_app.command("revoke")
def revoke_token(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="Token id, or a unique prefix of it.")],
) -> None:
    """Revoke a token at once."""
    row = api(ctx).request("DELETE", f"/tokens/{token_id}")
    out.print(f"revoked token {row['id']}")
