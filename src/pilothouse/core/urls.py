"""Credentials inside URLs and DSNs: detect them and mask them (pure functions).

One helper for every place a URL or a database DSN is shown (API, CLI, audit entries, error
messages, logs). It is built on parsers, not on a pattern that needs a user name:

- URLs go through `urllib.parse.urlsplit` (RFC 3986): `postgresql://u:pw@h/db`,
  `redis://:pw@h:6379/0` (a password and no user), `https://token@host` (an http user name is
  a credential), and query parameters that carry one (libpq's `?password=`, `sslpassword`,
  `token`, `secret`, `api_key`, S3 signatures...);
- libpq key/value DSNs (`host=h user=u password=pw`) go through psycopg's conninfo parser (libpq's
  own), with a plain scan as a fallback for fragments libpq would refuse.

`mask_url` masks one value; `mask_text` masks every URL and `password=` inside free text (an
error message, a log line). Masking never fails: a value that does not parse is returned as is
by `mask_url` (it carries no URL credential) and scanned by `mask_text`.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit

MASK = "***"

#: Query parameters (lower case) whose value is a credential.
SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "sslpassword",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "auth",
        "auth_token",
        "api_key",
        "apikey",
        "key",
        "private_key",
        "signature",
        "sig",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
    }
)
_SECRET_WORDS = ("password", "secret", "token")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")
#: `password=`, `sslpassword=`, and names that end in one (`PGPASSWORD=`, `MYSQL_PWD=`,
#: `DB_PASSWORD=`); an unquoted value stops at a quote, so `'host=db password=x'` keeps its `'`.
_KV_PASSWORD = re.compile(
    r"(?i)\b([a-z0-9_]*?(?:password|passwd|pwd))(\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"]+)"
)


def _secret_param(name: str) -> bool:
    lowered = unquote(name).lower()
    return lowered in SECRET_PARAMS or any(word in lowered for word in _SECRET_WORDS)


def _split(value: str) -> SplitResult | None:
    if "://" not in value:
        return None
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts


def _userinfo_secret(parts: SplitResult) -> bool:
    if parts.password is not None and parts.password != "":
        return True
    # A user name alone is a credential for http(s) (e.g. a token as https://TOKEN@host).
    return parts.scheme in ("http", "https") and bool(parts.username)


def _query_secret(query: str) -> bool:
    return any(
        sep and _secret_param(name) and val
        for name, sep, val in (pair.partition("=") for pair in query.split("&"))
    )


def has_credentials(value: str) -> bool:
    """Whether `value` is a URL or DSN that carries a password, token or similar credential."""
    parts = _split(value)
    if parts is not None:
        return _userinfo_secret(parts) or _query_secret(parts.query)
    return _conninfo_password(value) is not None


def _conninfo_password(value: str) -> str | None:
    if "=" not in value or "://" in value:
        return None
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(value)
    except Exception:  # not a libpq DSN
        return None
    password = params.get("password") or params.get("sslpassword")
    return str(password) if password else None


def mask_url(value: str, *, hide_path: bool = False) -> str:
    """`value` with its credentials replaced by ***: the URL password (or an http user name),
    secret query parameters, a libpq `password=`. With `hide_path` the path and query are
    masked too (a webhook or Slack URL whose path is the token)."""
    parts = _split(value)
    if parts is None:
        if _conninfo_password(value) is not None:
            return _KV_PASSWORD.sub(lambda m: m.group(1) + m.group(2) + MASK, value)
        return value
    host = parts.netloc.rpartition("@")[2]
    userinfo = ""
    if "@" in parts.netloc:
        if parts.password is not None:
            userinfo = f"{parts.username or ''}:{MASK}@"
        elif _userinfo_secret(parts):
            userinfo = f"{MASK}@"
        else:
            userinfo = parts.netloc.rpartition("@")[0] + "@"
    if hide_path:
        rest = "/" + MASK if (parts.path.strip("/") or parts.query or parts.fragment) else ""
        return f"{parts.scheme}://{userinfo}{host}{rest}"
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            name, sep, val = pair.partition("=")
            pairs.append(f"{name}={MASK}" if sep and val and _secret_param(name) else pair)
        query = "&".join(pairs)
    out = f"{parts.scheme}://{userinfo}{host}{parts.path}"
    if query:
        out += "?" + query
    if parts.fragment:
        out += "#" + parts.fragment
    return out


def mask_text(text: str) -> str:
    """Free text with every URL masked by `mask_url` and every `password=...` hidden."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    if "=" in text:
        text = _KV_PASSWORD.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    return text
