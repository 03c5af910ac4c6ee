"""Backup freshness (issue 13.8): a target without a verified backup for its schedule interval
plus a grace is overdue; the `backups.freshness` loop alerts once per overdue period and sends
a recovery notice when a verified backup lands; `backup target list` and the API show it.

The clock is controlled: the loop's pass takes `now`, and the target's creation is moved into
the past where a real backup must land after a deadline."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse.access import Principal
from pilothouse.alerts import service as alerts
from pilothouse.backups import freshness
from pilothouse.backups.loops import BackupLoops
from pilothouse.backups.models import BackupTarget
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import load_keyring
from pilothouse.core.db import Database
from pilothouse.core.leases import Leases
from pilothouse.core.loops import Runtime
from pilothouse.users import service as users
from tests.alerts.test_channels import Receiver
from tests.backups.conftest import Harness, run
from tests.conftest import Api

GRACE = timedelta(minutes=60)
T = datetime(2026, 12, 1, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "at", "gap"),
    [
        ("0 2 * * *", T, timedelta(hours=24)),
        ("*/15 * * * *", T, timedelta(minutes=15)),
        ("0 3 * * 1", T, timedelta(days=7)),  # weekly
        ("0 2 1 * *", T, timedelta(days=31)),  # December 1 to January 1
    ],
)
def test_interval_is_the_gap_between_fires(schedule: str, at: datetime, gap: timedelta) -> None:
    assert freshness.interval(schedule, at) == gap


@pytest.mark.parametrize(
    ("schedule", "enabled", "verified", "now", "overdue", "due_by"),
    [
        # never verified: the clock starts at the target's creation (T - 1 h)
        ("0 2 * * *", True, None, T, False, T + timedelta(hours=24)),
        ("0 2 * * *", True, None, T + timedelta(hours=24, seconds=1), True, None),
        # verified at T: due by T + 24 h + 1 h grace
        ("0 2 * * *", True, T, T + timedelta(hours=25), False, T + timedelta(hours=25)),
        ("0 2 * * *", True, T, T + timedelta(hours=25, seconds=1), True, None),
        # no schedule, or disabled: never overdue
        (None, True, None, T + timedelta(days=90), False, "none"),
        ("0 2 * * *", False, None, T + timedelta(days=90), False, "none"),
    ],
)
def test_freshness_rule(
    schedule: str | None,
    enabled: bool,
    verified: datetime | None,
    now: datetime,
    overdue: bool,
    due_by: datetime | str | None,
) -> None:
    state = freshness.freshness(
        schedule=schedule,
        enabled=enabled,
        created_at=T - timedelta(hours=1),
        last_verified_at=verified,
        now=now,
        grace=GRACE,
    )
    assert state.overdue is overdue
    if due_by == "none":
        assert state.due_by is None
    elif due_by is not None:
        assert state.due_by == due_by
    if verified is not None:
        assert state.age_seconds == int((now - verified).total_seconds())


def _backdate(db_url: str, target_id: uuid.UUID, when: datetime) -> None:
    async def go() -> None:
        db = Database(db_url)
        try:
            async with db.session() as session:
                await session.execute(
                    sa.update(BackupTarget)
                    .where(BackupTarget.id == target_id)
                    .values(created_at=when)
                )
        finally:
            await db.dispose()

    run(go())


def test_overdue_alert_once_per_period_and_recovery(
    harness: Harness, sqlite_source: Path, db_url: str, data_dir: Path
) -> None:
    receiver = Receiver(204)
    target_id = harness.target("app", f"sqlite:///{sqlite_source}", schedule="0 2 * * *")
    # Created an hour ago: the first overdue period's deadline (creation + 25 h) then differs
    # from the one after the real backup below (its completion + 25 h). Created now, both can
    # fall in the same second, and the second period's alert claim would already be spent.
    created = utcnow() - timedelta(hours=1)
    _backdate(harness.db_url, target_id, created)
    settings = Settings(data_dir=data_dir, database_url=db_url)

    async def setup_channel() -> None:
        db = Database(db_url)
        try:
            async with db.session() as session:
                user, _ = await users.bootstrap_admin(session, "admin")
                admin = Principal(id=user.id, name=user.name, role="admin")
                keyring = load_keyring(None, data_dir / "master.key")
                await alerts.add_channel(
                    session,
                    admin,
                    keyring,
                    name="oncall",
                    kind="webhook",
                    config={"url": receiver.url},
                )
        finally:
            await db.dispose()

    def tick(now: datetime) -> int:
        async def go() -> int:
            db = Database(db_url)
            try:
                rt = Runtime(db, settings, Leases(db, owner="w1"))
                sent = await BackupLoops(rt).freshness(now)
                await alerts.settle()
                return sent
            finally:
                await db.dispose()

        return run(go())

    try:
        run(setup_channel())
        assert tick(created + timedelta(hours=1)) == 0  # within interval + grace
        late = created + timedelta(hours=26)
        assert tick(late) == 1
        assert tick(late + timedelta(hours=5)) == 0  # one alert per overdue period
        [alert] = receiver.bodies
        assert alert["event"] == "backup_overdue" and alert["target"] == "app"
        assert "no verified backup yet" in alert["text"] and "60 min grace" in alert["text"]

        # The target was created two days ago: its deadline has passed in real time, so the
        # real backup taken now lands after it.
        _backdate(harness.db_url, target_id, created - timedelta(days=2))
        receiver.bodies.clear()
        now = utcnow()
        assert tick(now) == 1  # a new overdue period (a new deadline): alerted
        backup = harness.backup(target_id)
        assert backup.status == "completed"
        assert harness.get(backup.id).integrity_check_passed is True
        after = utcnow() + timedelta(minutes=1)
        assert tick(after) == 1  # the recovery notice
        assert tick(after + timedelta(minutes=1)) == 0  # once
        assert [b["event"] for b in receiver.bodies] == ["backup_overdue", "backup_fresh"]
        assert "fresh again" in receiver.bodies[-1]["text"]

        # A day and a bit later without a new backup: overdue again, alerted once.
        later = after + timedelta(hours=25, minutes=5)
        assert tick(later) == 1 and tick(later + timedelta(hours=1)) == 0
        assert receiver.bodies[-1]["event"] == "backup_overdue"
        assert "no verified backup since" in receiver.bodies[-1]["text"]
    finally:
        receiver.close()


def test_target_list_shows_freshness(
    api: Api, sqlite_source: Path, settings: Settings, admin_token: str, db_url: str
) -> None:
    from tests.conftest import LiveServer
    from tests.variables.test_cli_and_rotation import run_cli

    for name, schedule in (("daily", "0 2 * * *"), ("manual", "")):
        body = {"name": name, "dsn": f"sqlite:///{sqlite_source}", "schedule": schedule}
        api.ok(api.post("/backup-targets", body), 201)
    fresh = {t["name"]: t for t in api.ok(api.get("/backup-targets"))}
    assert fresh["daily"]["overdue"] is False and fresh["daily"]["due_by"]
    assert fresh["daily"]["last_verified_at"] is None
    assert fresh["manual"]["due_by"] is None and fresh["manual"]["overdue"] is False
    daily: dict[str, Any] = fresh["daily"]
    _backdate(db_url, uuid.UUID(daily["id"]), utcnow() - timedelta(days=3))
    shown = api.ok(api.get("/backup-targets/daily"))
    assert shown["overdue"] is True
    with LiveServer(settings) as server:
        listed = run_cli(server, admin_token, "backup", "target", "list")
        assert listed.returncode == 0, listed.stderr
        lines = {line.split()[1]: line for line in listed.stdout.splitlines() if "│" in line[:3]}
        assert "overdue" in lines["daily"] and "never" in lines["daily"]
        assert "overdue" not in lines["manual"]
