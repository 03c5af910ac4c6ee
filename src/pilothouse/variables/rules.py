"""Format rules for variable values and the check run before every deployment (pure).

Messages name the key and the rule, never the value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import regex

from pilothouse.core.urls import has_credentials

RULES = (
    "url",
    "https_url",
    "postgres_dsn",
    "redis_url",
    "one_of",
    "semver_or_sha",
    "integer",
    "regex",
)
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
SHA = re.compile(r"^[0-9a-f]{7,40}$")
#: Anywhere in the name.
SECRET_PARTS = re.compile(r"SECRET|PASSW|PASSPHRASE|PRIVATE|API_?KEY|DSN|CREDENTIAL")
#: A whole word of the name (words are separated by `_`).
SECRET_WORDS = frozenset({"KEY", "KEYS", "PASS", "PWD", "HMAC", "SALT", "COOKIE"})
#: The name starts with it (AUTH*, but not AUTHOR).
SECRET_PREFIX = re.compile(r"^(?:AUTH(?!ORS?(?:_|$))|JWT|SESSION|STRIPE)")
#: Regex rules are run with this limit (seconds): a pattern that backtracks catastrophically
#: becomes a failed check naming the rule instead of a stalled server.
REGEX_TIMEOUT = 0.5


def looks_secret(key: str, value: str | None = None) -> bool:
    """Whether a variable should be a secret: its name (`*_KEY`, `*_PASS`, `*PASSPHRASE*`,
    `*_TOKEN`, `*SECRET*`, `*PASSWORD*`, `AUTH*`, `JWT*`, `SESSION*`, `STRIPE*`, ...) or its
    value (a URL or DSN carrying a password or token)."""
    name = key.upper()
    words = name.split("_")
    if (
        SECRET_PARTS.search(name)
        or SECRET_PREFIX.match(name)
        or any(w in SECRET_WORDS or w.endswith(("TOKEN", "TOKENS")) for w in words)
    ):
        return True
    return bool(value) and has_credentials(str(value))


def secrecy(
    current: bool | None, key: str, value: str, *, is_secret: bool | None, plain: bool
) -> bool:
    """Whether a variable is stored as a secret (pure). Secrecy is sticky: a secret stays one
    unless `plain` is asked for explicitly. A new variable is a secret when asked, or when its
    name or value looks secret (rules.looks_secret); a plain one becomes a secret when asked,
    or when its new value carries a credential."""
    if plain:
        return False
    if is_secret or current:
        return True
    if current is None:
        return looks_secret(key, value)
    return has_credentials(value)


def check_key(key: str) -> str | None:
    """None when `key` is a valid variable name."""
    if not KEY_PATTERN.match(key):
        return "must start with a letter or _ and hold only A-Z a-z 0-9 _ (at most 255)"
    return None


def _url(value: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname) and " " not in value


def check_args(rule: str, args: Mapping[str, Any]) -> str | None:
    """None when `args` suit `rule` (declared on the environment, checked once)."""
    if rule not in RULES:
        return f"unknown rule {rule!r}: use one of {', '.join(RULES)}"
    if rule == "one_of":
        values = args.get("values")
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) for v in values)
        ):
            return "one_of needs args.values: a non-empty list of strings"
    if rule == "integer":
        for bound in ("min", "max"):
            if bound in args and not isinstance(args[bound], int):
                return f"integer args.{bound} must be an integer"
        if "min" in args and "max" in args and args["min"] > args["max"]:
            return "integer args.min must not exceed args.max"
    if rule == "regex":
        pattern = args.get("pattern")
        if not isinstance(pattern, str):
            return "regex needs args.pattern"
        try:
            regex.compile(pattern)
        except regex.error as exc:
            return f"args.pattern is not a valid regular expression: {exc}"
    return None


def check_value(rule: str, args: Mapping[str, Any], value: str) -> str | None:
    """None when `value` satisfies `rule`; otherwise the rule in words (never the value)."""
    if rule == "url":
        return None if _url(value, ("http", "https")) else "must be an http(s) URL"
    if rule == "https_url":
        return None if _url(value, ("https",)) else "must be an https:// URL"
    if rule == "postgres_dsn":
        ok = _url(value, ("postgres", "postgresql")) and bool(urlsplit(value).path.strip("/"))
        return None if ok else "must be a postgresql://user@host/dbname URL"
    if rule == "redis_url":
        ok = _url(value, ("redis", "rediss"))
        return None if ok else "must be a redis:// or rediss:// URL"
    if rule == "one_of":
        allowed = [str(v) for v in args.get("values", [])]
        return None if value in allowed else f"must be one of {' | '.join(allowed)}"
    if rule == "semver_or_sha":
        ok = bool(SEMVER.match(value) or SHA.match(value))
        return None if ok else "must be a semantic version or a git SHA"
    if rule == "integer":
        low, high = args.get("min"), args.get("max")
        span = f" between {low} and {high}" if low is not None and high is not None else ""
        if not re.fullmatch(r"[+-]?\d{1,18}", value.strip()):
            return f"must be an integer{span}"
        number = int(value)
        if (low is not None and number < low) or (high is not None and number > high):
            return f"must be an integer{span or ' in range'}"
        return None
    if rule == "regex":
        pattern = str(args.get("pattern", ""))
        try:
            matched = regex.fullmatch(pattern, value, timeout=REGEX_TIMEOUT)
        except TimeoutError:
            return f"regex rule {pattern} took longer than {REGEX_TIMEOUT}s: treated as failed"
        return None if matched else f"must match {pattern}"
    return f"unknown rule {rule}"


@dataclass(frozen=True)
class Requirement:
    key: str
    required: bool = True
    rule: str | None = None
    args: Mapping[str, Any] | None = None


def check_all(requirements: list[Requirement], values: Mapping[str, str]) -> list[str]:
    """Every problem at once, sorted by key: `KEY: is required` or `KEY: <rule>`."""
    problems = []
    for req in sorted(requirements, key=lambda r: r.key):
        value = values.get(req.key)
        if value is None or value == "":
            if req.required:
                problems.append(f"{req.key}: is required")
            continue
        if req.rule:
            problem = check_value(req.rule, req.args or {}, value)
            if problem:
                problems.append(f"{req.key}: {problem}")
    return problems
