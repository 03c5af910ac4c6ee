"""Seed 001: artifacts are "retained for 30 days for rollback capability", then pruned.

A pure rule. An artifact is pruned when all of these hold:
- it was last used more than PRUNE_AFTER (30 days) before now: registered, or last made live
  (`deployed_at`), whichever is later;
- it is not a rollback target: neither the live release nor a release a rollback could return
  to (deployments/rollback.py: the releases still standing under the live one);
- it is not pruned already, and not soft-deleted (a deleted one is gone from every list anyway).

Pruning keeps the record (marked `pruned_at`, with an audit entry) and removes the files
pilothouse holds for it (the log files of its replicas that no longer run). A pruned artifact
cannot be deployed again; register the build again under a new version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pilothouse.deployments.rollback import Step, live_release, rollback_candidates

PRUNE_AFTER = timedelta(days=30)


@dataclass(frozen=True)
class Facts:
    """What the rule needs to know about one artifact."""

    id: str
    created_at: datetime
    deployed_at: datetime | None
    pruned: bool = False
    deleted: bool = False


def rollback_keep(history: Sequence[Step], live: str | None) -> frozenset[str]:
    """The artifacts retention must keep for a service: the live one and every release a
    rollback could return to. `live` is the deployed artifact (None: the history's live one)."""
    live = live if live is not None else live_release(history)
    if live is None:
        return frozenset()
    return frozenset({live, *rollback_candidates(history, live)})


def last_used(facts: Facts) -> datetime:
    """Registered, or last made live, whichever is later."""
    if facts.deployed_at is not None and facts.deployed_at > facts.created_at:
        return facts.deployed_at
    return facts.created_at


def prunable(artifacts: Sequence[Facts], keep: frozenset[str], now: datetime) -> list[str]:
    """Ids of the artifacts of one service to prune on this pass, in the given order."""
    return [
        a.id
        for a in artifacts
        if not a.pruned and not a.deleted and a.id not in keep and now - last_used(a) > PRUNE_AFTER
    ]
