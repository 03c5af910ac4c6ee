"""Disaster recovery: with the pilothouse host and its store gone, a backup object and the key
file are enough. The CLI runs from a fresh virtualenv holding only the installed package (its
dependencies visible, no source tree, no data directory, no PILOTHOUSE_* settings, no store)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.backups.databases import parse_dsn
from pilothouse.backups.jobs import _take
from pilothouse.backups.storage import LocalStorage
from pilothouse.core.crypto import load_keyring
from pilothouse.setup import ensure_master_key
from tests.backups.conftest import maria_fingerprint, mariadb, pg_fingerprint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with pilothouse installed from a wheel of this tree. The dependencies
    come from the test environment's site-packages through a .pth line (which does not run
    that directory's own .pth files, so the editable pilothouse there stays invisible)."""
    root = tmp_path_factory.mktemp("dr")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("pilothouse-*.whl"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import pilothouse; print(pilothouse.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=root,
    ).stdout
    assert where.startswith(str(purelib)), where  # the installed copy, not the source tree
    return venv


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Path]:
    """An empty place standing for the recovery machine: only what the test copies in."""
    place = tmp_path / "recovery"
    place.mkdir()
    (place / "home").mkdir()
    yield place


def recover(venv: Path, kit: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(kit / "home"),
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
    }
    proc = subprocess.run(
        [str(venv / "bin" / "pilothouse"), "backup", "restore", *args],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    # nothing of a pilothouse installation appeared: no data directory, no store
    assert not (kit / "home" / ".local" / "share" / "pilothouse").exists()
    return proc


def make_object(dsn: str, kit: Path, data_dir: Path) -> Path:
    """A backup object taken by the real pipeline, copied into the kit with the key file."""
    key_file = data_dir / "master.key"
    ensure_master_key(key_file)
    kind, url = parse_dsn(dsn)
    storage = LocalStorage(data_dir / "backups")
    _take(
        kind, url, storage, "prod/2026/12/01/obj.dump.zst.enc", load_keyring(None, key_file), None
    )
    shutil.copy(key_file, kit / "master.key")
    obj = kit / "obj.dump.zst.enc"
    shutil.copy(data_dir / "backups" / "prod/2026/12/01/obj.dump.zst.enc", obj)
    return obj


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM notes ORDER BY id").fetchall()
    finally:
        conn.close()


def test_sqlite_object_with_only_the_key(
    fresh_venv: Path, kit: Path, sqlite_source: Path, tmp_path: Path
) -> None:
    obj = make_object(f"sqlite:///{sqlite_source}", kit, tmp_path / "data")
    done = recover(
        fresh_venv,
        kit,
        "--from-file",
        obj.name,
        "--key-file",
        "master.key",
        "--to",
        f"sqlite:///{kit}/restored.db",
    )
    assert done.returncode == 0, done.stderr
    assert "restored obj.dump.zst.enc (sqlite)" in done.stdout
    assert _rows(kit / "restored.db") == _rows(sqlite_source)

    plain = recover(
        fresh_venv,
        kit,
        "--from-file",
        obj.name,
        "--key-file",
        "master.key",
        "--to-file",
        "plain.db",
    )
    assert plain.returncode == 0, plain.stderr
    assert _rows(kit / "plain.db") == _rows(sqlite_source)
    assert stat.S_IMODE((kit / "plain.db").stat().st_mode) == 0o600
    again = recover(
        fresh_venv,
        kit,
        "--from-file",
        obj.name,
        "--key-file",
        "master.key",
        "--to-file",
        "plain.db",
    )
    assert again.returncode == 1
    assert again.stderr.strip() == "error: plain.db exists: pass --clean to replace it"

    # a damaged object is refused, and nothing is left where the restore would have gone
    data = obj.read_bytes()
    middle = len(data) // 2
    obj.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :])
    damaged = recover(
        fresh_venv,
        kit,
        "--from-file",
        obj.name,
        "--key-file",
        "master.key",
        "--to",
        f"sqlite:///{kit}/other.db",
    )
    assert damaged.returncode == 1
    line = damaged.stderr.strip()
    assert "\n" not in line and "failed authentication" in line, line
    assert "the target was not touched" in line
    assert not (kit / "other.db").exists()
    assert sorted(p.name for p in kit.iterdir()) == sorted(
        ["home", "master.key", "obj.dump.zst.enc", "plain.db", "restored.db"]
    )


def test_a_wrong_or_missing_key_is_one_line(
    fresh_venv: Path, kit: Path, sqlite_source: Path, tmp_path: Path
) -> None:
    obj = make_object(f"sqlite:///{sqlite_source}", kit, tmp_path / "data")
    ensure_master_key(kit / "other.key")
    wrong = recover(
        fresh_venv, kit, "--from-file", obj.name, "--key-file", "other.key", "--to-file", "x.db"
    )
    assert wrong.returncode == 1 and "not in this keyring" in wrong.stderr
    none = recover(fresh_venv, kit, "--from-file", obj.name, "--to-file", "x.db")
    assert none.returncode == 1
    assert (
        none.stderr.strip() == "error: --from-file needs --key-file FILE (or PILOTHOUSE_MASTER_KEY)"
    )
    assert not (kit / "x.db").exists()


def test_postgres_object_into_a_new_database(
    fresh_venv: Path, kit: Path, pg_source: str, pg_empty: str, tmp_path: Path
) -> None:
    obj = make_object(pg_source, kit, tmp_path / "data")
    done = recover(
        fresh_venv, kit, "--from-file", obj.name, "--key-file", "master.key", "--to", pg_empty
    )
    assert done.returncode == 0, done.stderr
    assert pg_fingerprint(pg_empty) == pg_fingerprint(pg_source)
    dump = recover(
        fresh_venv,
        kit,
        "--from-file",
        obj.name,
        "--key-file",
        "master.key",
        "--to-file",
        "app.pgdump",
    )
    assert dump.returncode == 0 and (kit / "app.pgdump").read_bytes()[:5] == b"PGDMP"


def test_mariadb_object_into_a_new_database(
    fresh_venv: Path, kit: Path, maria_source: str, tmp_path: Path
) -> None:
    obj = make_object(maria_source, kit, tmp_path / "data")
    source_db = maria_source.rsplit("/", 1)[1]
    restored_db = source_db.replace("bk_src_", "bk_dr_")
    mariadb(f"CREATE DATABASE {restored_db}")
    try:
        to = maria_source.rsplit("/", 1)[0] + f"/{restored_db}"
        done = recover(
            fresh_venv, kit, "--from-file", obj.name, "--key-file", "master.key", "--to", to
        )
        assert done.returncode == 0, done.stderr
        assert maria_fingerprint(restored_db) == maria_fingerprint(source_db)
    finally:
        mariadb(f"DROP DATABASE IF EXISTS {restored_db}")
    wrong_kind = recover(
        fresh_venv,
        kit,
        "--from-file",
        obj.name,
        "--key-file",
        "master.key",
        "--to",
        f"sqlite:///{kit}/x.db",
    )
    assert wrong_kind.returncode == 1
    assert "holds a mariadb dump; --to is sqlite" in wrong_kind.stderr
