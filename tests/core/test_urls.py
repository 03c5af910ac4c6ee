"""The one masking helper for URLs and DSNs: a table of forms, and a property that no password
survives masking."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pilothouse.core.urls import has_credentials, mask_text, mask_url


@pytest.mark.parametrize(
    ("value", "masked", "secret"),
    [
        ("postgresql://app:pw1@db:5432/app", "postgresql://app:***@db:5432/app", True),
        ("redis://:pw2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0", True),
        ("rediss://default:pw3@cache/1", "rediss://default:***@cache/1", True),
        (
            "postgresql://app@db/app?sslmode=require&password=pw4",
            "postgresql://app@db/app?sslmode=require&password=***",
            True,
        ),
        ("postgresql://db/app?sslpassword=pw5", "postgresql://db/app?sslpassword=***", True),
        ("https://tok6@api.example.com/x", "https://***@api.example.com/x", True),
        ("https://h.example/hook?token=tok7&a=1", "https://h.example/hook?token=***&a=1", True),
        ("mysql://root:@db/x", "mysql://root:***@db/x", False),  # empty password: nothing to hide
        ("postgresql://app@db/app", "postgresql://app@db/app", False),
        ("https://example.com/a?b=c", "https://example.com/a?b=c", False),
        (
            "host=db user=app password=pw8 dbname=app",
            "host=db user=app password=*** dbname=app",
            True,
        ),
        ("host=db password='p w9' dbname=app", "host=db password=*** dbname=app", True),
        ("not a url", "not a url", False),
        ("http://[::1]:bad/", "http://[::1]:bad/", False),
    ],
)
def test_mask_url(value: str, masked: str, secret: bool) -> None:
    assert mask_url(value) == masked
    assert has_credentials(value) is secret


def test_hide_path_masks_tokens_in_paths() -> None:
    slack = "https://hooks.slack.com/services/T0/B0/XyZsecret"
    assert mask_url(slack, hide_path=True) == "https://hooks.slack.com/***"
    assert mask_url("https://u:p@h.example", hide_path=True) == "https://u:***@h.example"


def test_mask_text_finds_every_url_and_password() -> None:
    text = (
        "connect failed for redis://:s3cret-a@cache:6379 and "
        "postgresql://u:s3cret-b@db/app; dsn host=db password=s3cret-c port=5"
    )
    masked = mask_text(text)
    assert "s3cret" not in masked
    assert "redis://:***@cache:6379" in masked and "password=***" in masked


@given(
    password=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=6),
    scheme=st.sampled_from(["postgresql", "redis", "mysql", "https", "amqp"]),
    user=st.sampled_from(["", "app", "default"]),
)
def test_no_password_survives(password: str, scheme: str, user: str) -> None:
    url = f"{scheme}://{user}:{quote(password, safe='')}@host.example:1234/db"
    assume(quote(password, safe="") not in f"{scheme}://{user}:***@host.example:1234/db")
    assert quote(password, safe="") not in mask_url(url)
    assert quote(password, safe="") not in mask_text(f"error: {url} refused")
    assert has_credentials(url)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app@db/app?password=libpq-pw-1",
        "postgresql://:colon-pw-2@db/app",
        "mariadb://root:maria-pw-3@127.0.0.1/test",
    ],
)
def test_backup_target_display_uses_the_helper(dsn: str) -> None:
    from pilothouse.backups.databases import parse_dsn, safe_dsn

    shown = safe_dsn(parse_dsn(dsn)[1])
    assert "-pw-" not in shown and "***" in shown


def test_log_lines_mask_passwords_without_a_user() -> None:
    from pilothouse.core.logging import mask_text as log_mask

    line = log_mask("probe of redis://:nouser-pw@cache:6379/0 failed; dsn host=h password=kv-pw")
    assert "nouser-pw" not in line and "kv-pw" not in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PGPASSWORD=hunter2 pg_dump app", "PGPASSWORD=*** pg_dump app"),
        ("MYSQL_PWD=hunter2 mysqldump", "MYSQL_PWD=*** mysqldump"),
        ("DB_PASSWORD='hunter 2' ./migrate", "DB_PASSWORD=*** ./migrate"),
        ("psql 'host=db password=hunter2'", "psql 'host=db password=***'"),
        ('psql "host=db password=hunter2" -c 1', 'psql "host=db password=***" -c 1'),
        ("password = hunter2", "password = ***"),
    ],
)
def test_mask_text_hides_prefixed_names_and_keeps_quotes(text: str, expected: str) -> None:
    assert mask_text(text) == expected
