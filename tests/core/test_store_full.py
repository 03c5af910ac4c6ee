"""The store's disk fills up: writes answer 503 naming the cause, never a 500 with a traceback,
and work again once there is room."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from pilothouse.app import create_app
from pilothouse.config import Settings
from pilothouse.core.store import disk_full
from pilothouse.setup import _bootstrap


def _wrapped(orig: BaseException) -> sa.exc.DBAPIError:
    return sa.exc.OperationalError("INSERT ...", {}, orig)


@pytest.mark.parametrize(
    ("error", "full"),
    [
        (_wrapped(sqlite3.OperationalError("database or disk is full")), True),
        (_wrapped(sqlite3.OperationalError("disk I/O error")), True),
        (_wrapped(sqlite3.OperationalError("unable to open database file")), False),
        (_wrapped(sqlite3.OperationalError("no such table: users")), False),
        (_wrapped(psycopg.errors.DiskFull("could not extend file")), True),
        (_wrapped(psycopg.errors.IoError("could not write block")), True),
        (_wrapped(psycopg.OperationalError("connection refused")), False),
        (sqlite3.OperationalError("database or disk is full"), False),  # not the store's
        (ValueError("database or disk is full"), False),
    ],
)
def test_disk_full_is_recognised(error: BaseException, full: bool) -> None:
    assert disk_full(error) is full


def _fill(path: Path) -> None:
    with open(path, "wb", buffering=0) as out:
        for size in (65536, 4096, 512):
            try:
                while out.write(b"\0" * size) == size:
                    pass
            except OSError:
                continue


@pytest.mark.disk_size("3m")
def test_a_full_store_disk_answers_503_and_recovers(
    small_disk: Path, sqlite_template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_path = small_disk / "pilothouse.db"
    shutil.copy(sqlite_template, db_path)
    url = f"sqlite:///{db_path}"
    token = asyncio.run(_bootstrap(url, "admin"))
    settings = Settings(data_dir=tmp_path / "data", database_url=url, role="api")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, migrate=False), raise_server_exceptions=False) as client:
        _fill(small_disk / "filler")
        answers = []
        for n in range(40):
            body = {"name": f"env{n}", "type": "development", "config": {"pad": "p" * 60000}}
            answers.append(client.post("/api/v1/environments", json=body, headers=headers))
        codes = {a.status_code for a in answers}
        assert 500 not in codes, [a.text for a in answers if a.status_code == 500][:1]
        refused = [a for a in answers if a.status_code == 503]
        assert refused, codes
        assert refused[0].json()["error"] == "store_full"
        assert "disk is full" in refused[0].json()["message"]
        assert refused[0].headers["Retry-After"]
        assert refused[0].json()["detail"]["reason"] == "disk full"
        (small_disk / "filler").unlink()
        again = client.post("/api/v1/environments", json={"name": "after"}, headers=headers)
        assert again.status_code == 201, again.text
    assert "Traceback" not in capsys.readouterr().err
