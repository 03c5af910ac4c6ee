"""Every allowed and every refused transition of the four status machines."""

from __future__ import annotations

import itertools

import pytest

from pilothouse.backups.transitions import TABLE as BACKUP
from pilothouse.core.statemachine import check_transition
from pilothouse.deployments.transitions import TABLE as DEPLOYMENT
from pilothouse.errors import InvalidTransition
from pilothouse.replicas.transitions import TABLE as REPLICA
from pilothouse.services.transitions import TABLE as SERVICE

# Written out by hand from the seeds (not derived from the tables under test).
DEPLOYMENT_EDGES = {
    ("pending", "building"),
    ("building", "deploying"),
    ("deploying", "success"),
    ("deploying", "failed"),
    ("success", "rolled_back"),
    ("failed", "rolled_back"),
    # A deployment that never gets going (refused, interrupted) fails early.
    ("pending", "failed"),
    ("building", "failed"),
}
DEPLOYMENT_STATES = ["pending", "building", "deploying", "success", "failed", "rolled_back"]

SERVICE_EDGES = {
    ("pending", "scheduled"),
    ("pending", "failed"),
    ("pending", "deleted"),
    ("scheduled", "running"),
    ("scheduled", "failed"),
    ("scheduled", "stopped"),
    ("scheduled", "deleted"),
    ("running", "scheduled"),
    ("running", "stopped"),
    ("running", "failed"),
    ("running", "deleted"),
    ("stopped", "scheduled"),
    ("stopped", "deleted"),
    ("failed", "scheduled"),
    ("failed", "stopped"),
    ("failed", "deleted"),
}
SERVICE_STATES = ["pending", "scheduled", "running", "stopped", "failed", "deleted"]

REPLICA_EDGES = {
    ("pending", "starting"),
    ("pending", "stopped"),
    ("pending", "failed"),
    ("starting", "running"),
    ("starting", "stopping"),
    ("starting", "failed"),
    ("running", "stopping"),
    ("running", "failed"),
    ("stopping", "stopped"),
    ("stopping", "failed"),
    ("stopped", "starting"),
    ("failed", "starting"),
    ("failed", "stopped"),
}
REPLICA_STATES = ["pending", "starting", "running", "stopping", "stopped", "failed"]

# Seed 000 BackupJob / seed 003 Backup Records: a failed backup is retried while it has retries
# left; completed and failed backups expire with their retention; expired is final.
BACKUP_EDGES = {
    ("in_progress", "completed"),
    ("in_progress", "failed"),
    ("failed", "in_progress"),
    ("completed", "expired"),
    ("failed", "expired"),
}
BACKUP_STATES = ["in_progress", "completed", "failed", "expired"]


def _cases(table, states, edges, entity):  # type: ignore[no-untyped-def]
    return [
        pytest.param(table, entity, a, b, (a, b) in edges, id=f"{entity}:{a}->{b}")
        for a, b in itertools.product(states, repeat=2)
    ]


CASES = (
    _cases(DEPLOYMENT, DEPLOYMENT_STATES, DEPLOYMENT_EDGES, "deployment")
    + _cases(SERVICE, SERVICE_STATES, SERVICE_EDGES, "service")
    + _cases(REPLICA, REPLICA_STATES, REPLICA_EDGES, "replica")
    + _cases(BACKUP, BACKUP_STATES, BACKUP_EDGES, "backup")
)


@pytest.mark.parametrize(("table", "entity", "src", "dst", "allowed"), CASES)
def test_transition(table, entity, src, dst, allowed) -> None:  # type: ignore[no-untyped-def]
    if allowed:
        check_transition(table, entity, src, dst)
        return
    with pytest.raises(InvalidTransition) as info:
        check_transition(table, entity, src, dst)
    assert info.value.status == 409
    assert info.value.detail == {"entity": entity, "from": src, "to": dst}
    assert repr(src) in info.value.message and repr(dst) in info.value.message


def test_unknown_status_is_refused() -> None:
    with pytest.raises(InvalidTransition):
        check_transition(DEPLOYMENT, "deployment", "pending", "exploded")


def test_tables_cover_exactly_the_seed_states() -> None:
    assert set(DEPLOYMENT) == set(DEPLOYMENT_STATES)
    assert set(SERVICE) == set(SERVICE_STATES)
    assert set(REPLICA) == set(REPLICA_STATES)
    assert set(BACKUP) == set(BACKUP_STATES)
