"""One argument style across every `vars` subcommand (issue 13 item 13): the same option names
and help for the environment and service scope, the variable's name first, the same help for
the same option; the older `vars check ENV` still works and is not shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from pilothouse.config import Settings
from pilothouse.setup import ensure_master_key
from pilothouse.variables import cli as vars_cli
from tests.conftest import LiveServer, one_store
from tests.variables.test_cli_and_rotation import run_cli

GROUP: Any = typer.main.get_command(vars_cli.app)
COMMANDS: dict[str, Any] = dict(GROUP.commands)
Option, Argument = typer.core.TyperOption, typer.core.TyperArgument
#: Subcommands that act on one variable: KEY is their first positional argument.
PER_KEY = {"set", "unset", "history", "revert", "require", "unrequire"}
#: Subcommands with a service scope.
SERVICE_SCOPED = {"list", "set", "unset", "history", "revert", "import", "export", "check"}


def _option(command: Any, name: str) -> Any:
    return next((p for p in command.params if isinstance(p, Option) and name in p.opts), None)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_scope_options_are_spelled_and_explained_alike(name: str) -> None:
    command = COMMANDS[name]
    env = _option(command, "--env")
    if name == "diff":
        assert env is None  # it compares the two environments it is given
        arguments = [p for p in command.params if isinstance(p, Argument)]
        assert [a.metavar for a in arguments] == ["ENV_A", "ENV_B"]
        assert {getattr(a, "help", None) for a in arguments} == {vars_cli.ENV_HELP}
        return
    assert env is not None, f"vars {name} has no --env"
    assert env.opts == ["--env", "-e"] and env.help == vars_cli.ENV_HELP
    service = _option(command, "--service")
    if name in SERVICE_SCOPED:
        assert service is not None, f"vars {name} has no --service"
        assert service.opts == ["--service", "-s"] and service.help == vars_cli.SERVICE_HELP
    else:
        assert service is None
    for flag, help_text in (("--reveal", vars_cli.REVEAL_HELP), ("--json", None)):
        option = _option(command, flag)
        if option is not None and help_text:
            assert option.help == help_text
    output = _option(command, "--output")
    if output is not None:
        assert output.opts == ["--output", "-o"]
    assert _option(command, "-o") in (None, output), "-o is only ever --output"


@pytest.mark.parametrize("name", sorted(PER_KEY))
def test_the_variable_name_is_the_first_argument(name: str) -> None:
    arguments = [p for p in COMMANDS[name].params if isinstance(p, Argument)]
    assert arguments, f"vars {name} takes no KEY"
    first = arguments[0]
    assert first.metavar in ("KEY", "KEY[=VALUE]")
    if first.metavar == "KEY":
        assert getattr(first, "help", None) == vars_cli.KEY_HELP


def test_every_subcommand_says_what_it_does() -> None:
    for name, command in COMMANDS.items():
        assert command.help and command.help[0].isupper() and command.help.rstrip().endswith("."), (
            name
        )
    # no positional argument anywhere but KEY, a file, and diff's environments
    for name, command in COMMANDS.items():
        for argument in (p for p in command.params if isinstance(p, Argument)):
            assert argument.metavar in ("KEY", "KEY[=VALUE]", "ENV_A", "ENV_B") or (
                argument.name == "file"
            ), (name, argument.name)


@one_store
def test_check_takes_env_as_option_and_the_old_argument(
    settings: Settings, admin_token: str
) -> None:
    ensure_master_key(settings.master_key_path)
    with LiveServer(settings) as server:

        def cli(*args: str) -> Any:
            return run_cli(server, admin_token, *args)

        assert cli("env", "create", "prod", "--type", "production").returncode == 0
        assert cli("vars", "require", "DATABASE_URL", "--env", "prod").returncode == 0
        for args in (("--env", "prod"), ("-e", "prod"), ("prod",), ("prod", "--env", "prod")):
            proc = cli("vars", "check", *args)
            assert proc.returncode == 1, (args, proc.stderr)
            assert "DATABASE_URL: is required" in proc.stdout
            assert proc.stderr.strip() == "error: prod: 1 problem(s); deployments will be refused"
        for args, message in (
            ((), "error: missing option --env"),
            (("prod", "--env", "staging"), "error: two environments given"),
            (("prod", "staging"), "error: unexpected arguments"),
        ):
            proc = cli("vars", "check", *args)
            assert proc.returncode != 0 and proc.stderr.startswith(message), proc.stderr
            assert "Traceback" not in proc.stderr
        # the old spelling is not advertised
        usage = cli("vars", "check", "--help").stdout
        assert "[ENV]" not in usage and "--env" in usage
        # one scope spelling for a service-scoped write and read
        assert (
            cli("service", "create", "web", "--env", "prod", "--command", "x {port}").returncode
            == 0
        )
        assert cli("vars", "set", "A=1", "-e", "prod", "-s", "web").returncode == 0
        listed = cli("vars", "history", "A", "--env", "prod", "--service", "web")
        assert listed.returncode == 0 and "set" in listed.stdout
        assert (
            cli("vars", "unset", "A", "-e", "prod", "-s", "web").stdout.strip()
            == "A unset in prod/web"
        )


def test_export_writes_with_the_long_output_option(tmp_path: Path) -> None:
    output = _option(COMMANDS["export"], "--output")
    template = _option(COMMANDS["template"], "--output")
    assert output is not None and template is not None
    assert output.opts == template.opts == ["--output", "-o"]
