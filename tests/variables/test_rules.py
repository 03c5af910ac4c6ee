"""Format rules at their boundaries, the all-problems-at-once check, and .env round trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.variables.dotenv import DotenvError, parse, render
from pilothouse.variables.rules import Requirement, check_all, check_args, check_key, check_value


@pytest.mark.parametrize(
    ("rule", "args", "value", "ok"),
    [
        ("url", {}, "http://example.com", True),
        ("url", {}, "https://example.com/path?q=1", True),
        ("url", {}, "ftp://example.com", False),
        ("url", {}, "http://", False),
        ("url", {}, "example.com", False),
        ("https_url", {}, "https://hooks.example.com/x", True),
        ("https_url", {}, "http://hooks.example.com/x", False),
        ("https_url", {}, "https:///nohost", False),
        ("postgres_dsn", {}, "postgresql://u:p@db:5432/app", True),
        ("postgres_dsn", {}, "postgres://db/app", True),
        ("postgres_dsn", {}, "postgresql://db:5432", False),
        ("postgres_dsn", {}, "mysql://db/app", False),
        ("redis_url", {}, "redis://localhost:6379/0", True),
        ("redis_url", {}, "rediss://cache.example.com", True),
        ("redis_url", {}, "http://localhost:6379", False),
        ("one_of", {"values": ["DEBUG", "INFO", "WARNING", "ERROR"]}, "INFO", True),
        ("one_of", {"values": ["DEBUG", "INFO", "WARNING", "ERROR"]}, "info", False),
        ("one_of", {"values": ["DEBUG", "INFO", "WARNING", "ERROR"]}, "TRACE", False),
        ("semver_or_sha", {}, "1.2.3", True),
        ("semver_or_sha", {}, "v1.2.3-rc.1+build.5", True),
        ("semver_or_sha", {}, "01.2.3", False),
        ("semver_or_sha", {}, "abc1234", True),
        ("semver_or_sha", {}, "a" * 40, True),
        ("semver_or_sha", {}, "a" * 41, False),
        ("semver_or_sha", {}, "abc123", False),
        ("integer", {"min": 1, "max": 65535}, "0", False),
        ("integer", {"min": 1, "max": 65535}, "1", True),
        ("integer", {"min": 1, "max": 65535}, "65535", True),
        ("integer", {"min": 1, "max": 65535}, "65536", False),
        ("integer", {"min": 1, "max": 65535}, "12.5", False),
        ("integer", {}, "-7", True),
        ("integer", {}, "seven", False),
        ("regex", {"pattern": r"\d+:[A-Za-z0-9_-]+"}, "123456:ABC-def_1", True),
        ("regex", {"pattern": r"\d+:[A-Za-z0-9_-]+"}, "123456:ABC def", False),
        ("regex", {"pattern": r"\d+:[A-Za-z0-9_-]+"}, ":ABC", False),
    ],
)
def test_rule_boundaries(rule: str, args: dict[str, object], value: str, ok: bool) -> None:
    problem = check_value(rule, args, value)
    assert (problem is None) == ok, problem
    if problem:
        assert value not in problem or value in str(args)  # the rule, not the value


@pytest.mark.parametrize(
    ("rule", "args", "needle"),
    [
        ("nope", {}, "unknown rule"),
        ("one_of", {}, "args.values"),
        ("one_of", {"values": []}, "args.values"),
        ("integer", {"min": 5, "max": 1}, "must not exceed"),
        ("integer", {"min": "1"}, "must be an integer"),
        ("regex", {}, "args.pattern"),
        ("regex", {"pattern": "("}, "not a valid regular expression"),
    ],
)
def test_bad_rule_arguments(rule: str, args: dict[str, object], needle: str) -> None:
    assert needle in (check_args(rule, args) or "")


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("A", True),
        ("_A1", True),
        ("a_b", True),
        ("1A", False),
        ("A-B", False),
        ("", False),
        ("A" * 255, True),
        ("A" * 256, False),
        ("A B", False),
    ],
)
def test_keys(key: str, ok: bool) -> None:
    assert (check_key(key) is None) == ok


def test_every_problem_at_once_without_values() -> None:
    reqs = [
        Requirement("DATABASE_URL", rule="postgres_dsn"),
        Requirement("WEBHOOK_URL", rule="https_url"),
        Requirement("LOG_LEVEL", rule="one_of", args={"values": ["DEBUG", "INFO"]}),
        Requirement("OPTIONAL_PORT", required=False, rule="integer", args={"min": 1, "max": 9}),
        Requirement("BOT_TOKEN"),
    ]
    values = {"WEBHOOK_URL": "http://sneaky-value.example", "LOG_LEVEL": "LOUD"}
    problems = check_all(reqs, values)
    assert problems == [
        "BOT_TOKEN: is required",
        "DATABASE_URL: is required",
        "LOG_LEVEL: must be one of DEBUG | INFO",
        "WEBHOOK_URL: must be an https:// URL",
    ]
    assert not any("sneaky-value" in p or "LOUD" in p for p in problems)
    assert check_all(reqs, {**values, "OPTIONAL_PORT": "10"})[3] == (
        "OPTIONAL_PORT: must be an integer between 1 and 9"
    )


# -- .env files ---------------------------------------------------------------------------------


def test_dotenv_forms() -> None:
    text = (
        "# a comment\n"
        "export A=1\n"
        "B = two words  # trailing comment\n"
        'C="l1\\nl2 \\"q\\" \\\\n"\n'
        "D='single $x \\n'\n"
        'E="multi\nline"\n'
        "F=\n"
        "G=a#b\n"
        "\n"
        "A=again\n"
    )
    assert parse(text) == {
        "A": "again",
        "B": "two words",
        "C": 'l1\nl2 "q" \\n',
        "D": "single $x \\n",
        "E": "multi\nline",
        "F": "",
        "G": "a#b",
    }


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("NOVALUE\n", "line 1"),
        ("A=1\nB\n", "line 2"),
        ('A="open\n', "never closed"),
        ('A="x" y\n', "after the closing quote"),
        ("1A=x\n", "line 1"),
    ],
)
def test_dotenv_errors_name_the_line(text: str, needle: str) -> None:
    with pytest.raises(DotenvError, match=needle):
        parse(text)


keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=12))
def test_dotenv_round_trip(mapping: dict[str, str]) -> None:
    assert parse(render(mapping)) == mapping


def test_known_secret_values_never_reach_a_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    from pilothouse.core.logging import configure, get_logger, register_secrets

    configure("info")
    register_secrets(["sntl-log-5e2f"])
    log = get_logger("test")
    try:
        raise RuntimeError("connect failed with password sntl-log-5e2f")
    except RuntimeError as exc:
        log.error("boom sntl-log-5e2f", detail={"x": "a sntl-log-5e2f b"}, exc_info=exc)
    err = capsys.readouterr().err
    assert "boom ***" in err and "sntl-log-5e2f" not in err


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("API_TOKEN", True),
        ("DB_PASSWORD", True),
        ("stripe_api_key", True),
        ("DATABASE_DSN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("PRIVATE_PEM", True),
        ("LOG_LEVEL", False),
        ("PORT", False),
        ("KEYBOARD_LAYOUT", False),
        ("SIGNING_KEY", True),
        ("SMTP_PASS", True),
        ("GPG_PASSPHRASE", True),
        ("PASSPHRASE", True),
        ("GITHUB_TOKEN", True),
        ("CLIENT_SECRET", True),
        ("AUTH_HEADER", True),
        ("AUTHORIZATION", True),
        ("JWT_ISSUER_PRIVATE", True),
        ("JWT_ALG", True),
        ("SESSION_COOKIE_KEY", True),
        ("SESSIONSTORE", True),
        ("STRIPE_PUBLISHABLE", True),
        ("DJANGO_SECRET_KEY", True),
        ("KEY", True),
        ("HMAC", True),
        ("PWD", True),
        ("WEBHOOK_URL", False),  # a URL is secret only when it carries a credential
        ("AUTHOR", False),
        ("MONKEY_COUNT", False),
        ("TOKENIZER_MODEL", False),
    ],
)
def test_which_names_look_secret(key: str, secret: bool) -> None:
    from pilothouse.variables.rules import looks_secret

    assert looks_secret(key) is secret


@pytest.mark.parametrize(
    ("key", "value", "secret"),
    [
        ("DATABASE_URL", "postgresql://app:pw@db/app", True),
        ("CACHE", "redis://:pw@cache:6379/0", True),
        ("PG", "host=db user=app password=pw", True),
        ("UPSTREAM", "https://tok@api.example.com", True),
        ("DATABASE_URL", "postgresql://app@db/app", False),
        ("HOME_URL", "https://example.com/?q=1", False),
        ("LOG_LEVEL", "INFO", False),
    ],
)
def test_values_that_carry_credentials_look_secret(key: str, value: str, secret: bool) -> None:
    from pilothouse.variables.rules import looks_secret

    assert looks_secret(key, value) is secret


def _bounded(fn: Any, *args: Any) -> Any:
    """Run fn in a thread; fail (instead of hanging the suite) if it never returns."""
    import threading

    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(fn(*args)), daemon=True)
    thread.start()
    thread.join(20)  # a liveness bound, far above what a bounded check needs
    assert box, "the check never returned"
    return box[0]


@pytest.mark.parametrize("pattern", [r"(a+)+b", r"(a|a)+b", r"(a|aa)+b"])
def test_a_catastrophic_pattern_is_a_failed_check_naming_the_rule(pattern: str) -> None:
    from pilothouse.variables.rules import Requirement, check_all

    problems = _bounded(
        check_all,
        [Requirement("BOT_TOKEN", True, "regex", {"pattern": pattern})],
        {"BOT_TOKEN": "a" * 30},
    )
    assert len(problems) == 1 and problems[0].startswith("BOT_TOKEN: ")
    assert "regex" in problems[0] or pattern in problems[0]


@pytest.mark.parametrize(
    ("current", "key", "value", "is_secret", "plain", "expected"),
    [
        (None, "LOG_LEVEL", "INFO", None, False, False),  # new, plain-looking
        (None, "API_TOKEN", "x", None, False, True),  # new, name looks secret
        (None, "DB", "postgresql://u:pw@h/d", None, False, True),  # new, value carries one
        (None, "LOG_LEVEL", "INFO", True, False, True),  # asked
        (None, "API_TOKEN", "x", None, True, False),  # plain asked
        (True, "LOG_LEVEL", "INFO", None, False, True),  # sticky
        (True, "LOG_LEVEL", "INFO", False, False, True),  # sticky even against is_secret=false
        (True, "API_TOKEN", "x", None, True, False),  # only plain unmarks
        (False, "API_TOKEN", "x", None, False, False),  # made plain earlier: the name alone
        (False, "DB", "postgresql://u:pw@h/d", None, False, True),  # ...but a credential
        (False, "X", "1", True, False, True),
    ],
)
def test_secrecy(
    current: bool | None,
    key: str,
    value: str,
    is_secret: bool | None,
    plain: bool,
    expected: bool,
) -> None:
    from pilothouse.variables.rules import secrecy

    assert secrecy(current, key, value, is_secret=is_secret, plain=plain) is expected


@given(key=keys, value=st.text(max_size=40), is_secret=st.sampled_from([None, False, True]))
def test_a_secret_stays_one_unless_made_plain(key: str, value: str, is_secret: bool | None) -> None:
    from pilothouse.variables.rules import secrecy

    assert secrecy(True, key, value, is_secret=is_secret, plain=False) is True
    assert secrecy(True, key, value, is_secret=None, plain=True) is False
