"""Which data restore a rollback can carry (deployments/withdata.py offer()), as a table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.deployments.withdata import Arrival, BackupFact, WentLive, arrival_of, offer

V1, V2 = uuid.uuid4(), uuid.uuid4()
AT = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


def backup(status: str = "completed", integrity: bool | None = True) -> BackupFact:
    return BackupFact(
        uuid.uuid4(), "backup_20261201_180000", "app-db", "app", AT, 4096, status, integrity
    )


def arrival(*, migrated: bool = True, previous: uuid.UUID | None = V1) -> Arrival:
    name = {V1: "v1.0.0", V2: "v2.0.0"}.get(previous) if previous else None
    return Arrival(uuid.uuid4(), "v3.0.0", previous, name, migrated)


@pytest.mark.parametrize(
    ("arrived", "backups", "reason"),
    [
        (None, [backup()], "v3.0.0 went live through a rollback"),
        (arrival(migrated=False), [backup()], "v3.0.0 ran no migration: its data needs no restore"),
        (arrival(), [], "v3.0.0 ran a migration but took no pre-deployment backup"),
        (
            arrival(previous=V2),
            [backup()],
            "holds the data of v2.0.0, not of v1.0.0: roll back one release at a time",
        ),
        (arrival(previous=None), [backup()], "holds the data of nothing, not of v1.0.0"),
        (arrival(), [backup("expired")], "backup_20261201_180000 (app-db) is expired"),
        (arrival(), [backup(), backup("deleted")], "is deleted: it cannot be restored"),
        (arrival(), [backup(integrity=False)], "failed its integrity check"),
    ],
)
def test_no_data_restore(arrived: Arrival | None, backups: list[BackupFact], reason: str) -> None:
    found = offer("v3.0.0", arrived, V1, "v1.0.0", backups)
    assert not found.available and found.backups == () and found.ids == []
    assert found.reason is not None and reason in found.reason


@pytest.mark.parametrize("integrity", [True, None])  # None: not checked yet (still restorable)
def test_the_backups_of_a_migrating_release_fit_a_rollback_to_the_release_before(
    integrity: bool | None,
) -> None:
    first, second = backup(integrity=integrity), backup()
    found = offer("v3.0.0", arrival(), V1, "v1.0.0", [first, second])
    assert found.available and found.reason is None and found.from_version == "v3.0.0"
    assert found.ids == [str(first.id), str(second.id)]


@given(
    migrated=st.booleans(),
    previous=st.sampled_from([V1, V2, None]),
    statuses=st.lists(st.sampled_from(["completed", "expired", "failed", "deleted"]), max_size=3),
    integrity=st.sampled_from([True, False, None]),
)
def test_an_offer_only_ever_restores_data_that_fits(
    migrated: bool, previous: uuid.UUID | None, statuses: list[str], integrity: bool | None
) -> None:
    backups = [backup(s, integrity) for s in statuses]
    found = offer("v3.0.0", arrival(migrated=migrated, previous=previous), V1, "v1.0.0", backups)
    assert found.available != (found.reason is not None)
    if found.available:
        assert migrated and previous == V1 and integrity is not False
        assert all(b.status == "completed" for b in found.backups)
        assert found.backups == tuple(backups)


D = [uuid.UUID(int=i) for i in range(10)]


def went(n: int, artifact: uuid.UUID, event: str) -> WentLive:
    return WentLive(D[n], artifact, event)


@pytest.mark.parametrize(
    ("history", "arrived"),
    [
        ([], None),
        ([went(0, V2, "deploy")], D[0]),
        ([went(0, V1, "deploy"), went(1, V2, "deploy")], D[1]),
        # a scale, restart, config update, stop or start keeps the release: walk past them
        (
            [
                went(0, V1, "deploy"),
                went(1, V2, "deploy"),
                went(2, V2, "scale"),
                went(3, V2, "restart"),
                went(4, V2, "config_update"),
                went(5, V2, "stop"),
                went(6, V2, "start"),
            ],
            D[1],
        ),
        # v2 deployed, stopped, started, rolled back to v1, then `rollback --to v2`: v2 came
        # back through a rollback, so its old deploy's backup does not belong to it
        (
            [
                went(0, V1, "deploy"),
                went(1, V2, "deploy"),
                went(2, V2, "stop"),
                went(3, V2, "start"),
                went(4, V1, "rollback"),
                went(5, V2, "rollback"),
            ],
            None,
        ),
        ([went(0, V1, "deploy"), went(1, V2, "deploy"), went(2, V1, "rollback")], None),
        (
            [went(0, V1, "deploy"), went(1, V2, "rollback"), went(2, V2, "start")],
            None,
        ),
        # an automatic rollback after a failure returns to the release that was live: no change
        ([went(0, V1, "deploy"), went(1, V2, "deploy"), went(2, V2, "rollback")], D[1]),
        # the newest went-live step is of another release than the one asked about
        ([went(0, V2, "deploy"), went(1, V1, "scale")], None),
    ],
)
def test_how_the_live_release_arrived(history: list[WentLive], arrived: uuid.UUID | None) -> None:
    """The live release is V2 (the newest step's release, but in the last row)."""
    assert arrival_of(history, V2) == arrived
