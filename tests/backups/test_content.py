"""A drill proves content, not only row counts: per-table content checksums are recorded in the
backup's own snapshot and recomputed after the drill's restore."""

from __future__ import annotations

import subprocess
from pathlib import Path

import sqlalchemy as sa

from pilothouse.backups import jobs
from tests.backups.conftest import MARIADB_URL, Harness, mariadb


def _maria_utf8(sql: str, database: str) -> None:
    url = sa.engine.make_url(MARIADB_URL)
    subprocess.run(
        [
            "mariadb",
            "--default-character-set=utf8mb4",
            "-h",
            url.host or "127.0.0.1",
            "-P",
            str(url.port or 3306),
            "-u",
            url.username or "root",
            "-e",
            sql,
            database,
        ],
        check=True,
        capture_output=True,
    )


def test_an_emoji_enum_lost_by_mariadb_dump_fails_the_drill(
    harness: Harness, maria_source: str
) -> None:
    """mariadb-dump writes the label as '?': the rows come back as '' with the same count."""
    _maria_utf8(
        "CREATE TABLE moods (id INT PRIMARY KEY, mood ENUM('ok', '\U0001f680 launch')) "
        "CHARACTER SET utf8mb4; INSERT INTO moods VALUES (1, 'ok'), (2, '\U0001f680 launch');",
        maria_source.rsplit("/", 1)[1],
    )
    target = harness.target("maria", maria_source)
    backup = harness.backup(target)
    assert backup.status == "completed", backup.error_message
    assert backup.table_counts == {"empty_one": 0, "items": 2000, "moods": 2}
    assert set(backup.table_checksums or {}) == {"empty_one", "items", "moods"}
    drilled = harness.call(jobs.drill_backup, backup.id)
    assert drilled.restore_test_passed is False
    detail = drilled.restore_test_detail or ""
    assert "content differs" in detail and "moods" in detail, detail
    assert "items" not in detail.split("content differs", 1)[1], detail


def test_mariadb_content_matches_after_a_drill(harness: Harness, maria_source: str) -> None:
    target = harness.target("maria", maria_source)
    backup = harness.backup(target)
    drilled = harness.call(jobs.drill_backup, backup.id)
    assert drilled.restore_test_passed, drilled.restore_test_detail
    assert "content matches" in (drilled.restore_test_detail or "")


def test_postgres_checksums_in_the_dump_snapshot(harness: Harness, pg_source: str) -> None:
    target = harness.target("pg", pg_source)
    backup = harness.backup(target)
    assert backup.status == "completed", backup.error_message
    sums = backup.table_checksums or {}
    assert set(sums) == set(backup.table_counts or {}) and "public.varied" in sums
    drilled = harness.call(jobs.drill_backup, backup.id)
    assert drilled.restore_test_passed, drilled.restore_test_detail
    assert "content matches" in (drilled.restore_test_detail or "")


def test_sqlite_checksums_and_a_target_without_them(harness: Harness, sqlite_source: Path) -> None:
    target = harness.target("lite", f"sqlite:///{sqlite_source}")
    backup = harness.backup(target)
    assert set(backup.table_checksums or {}) == {"empty_one", "notes"}
    drilled = harness.call(jobs.drill_backup, backup.id)
    assert drilled.restore_test_passed and "content matches" in (drilled.restore_test_detail or "")
    plain = harness.target("plain", f"sqlite:///{sqlite_source}", content_checksums=False)
    counted = harness.backup(plain)
    assert counted.table_checksums is None and counted.table_counts
    drilled = harness.call(jobs.drill_backup, counted.id)
    assert drilled.restore_test_passed
    assert "counts match (no content checksums were recorded)" in (
        drilled.restore_test_detail or ""
    )


def test_mariadb_figures_come_from_the_dump_snapshot_while_rows_are_written(
    harness: Harness, maria_source: str
) -> None:
    """A writer commits rows all through the backup: the counts and checksums recorded must be
    those of the dump's own snapshot, or the drill would see a difference."""
    import threading

    import pymysql

    url = sa.engine.make_url(maria_source)
    stop = threading.Event()
    written = [0]

    def write() -> None:
        conn = pymysql.connect(
            host=url.host,
            port=url.port or 3306,
            user=url.username,
            database=url.database,
            autocommit=True,
        )
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO items (body) VALUES ('written during the backup')")
                written[0] += 1
        conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        target = harness.target("maria", maria_source)
        backup = harness.backup(target)
    finally:
        stop.set()
        writer.join()
    assert backup.status == "completed", backup.error_message
    assert written[0] > 0 and backup.table_checksums
    drilled = harness.call(jobs.drill_backup, backup.id)
    assert drilled.restore_test_passed, drilled.restore_test_detail


def test_mariadb_without_the_reload_privilege_records_counts_only(
    harness: Harness, maria_source: str
) -> None:
    database = maria_source.rsplit("/", 1)[1]
    user = f"ph_{database[-8:]}"
    mariadb(
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-norel'; "
        f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON {database}.* TO '{user}'@'%';"
    )
    try:
        url = sa.engine.make_url(maria_source).set(username=user, password="pw-norel")
        target = harness.target("maria", url.render_as_string(hide_password=False))
        backup = harness.backup(target)
        assert backup.status == "completed", backup.error_message
        assert backup.table_counts == {"empty_one": 0, "items": 2000}
        assert backup.table_checksums is None
    finally:
        mariadb(f"DROP USER IF EXISTS '{user}'@'%'")
