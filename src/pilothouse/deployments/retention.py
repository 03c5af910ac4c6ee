"""Seed 000: "deployments older than 90 days archived for compliance but kept for audit trail".

A pure rule. Archiving sets `archived_at`; nothing is deleted. An archived deployment is left out
of `deployments list` and `GET /deployments` unless asked for (`--archived`, `?archived=true`),
and stays readable by id (`deployments show`), in the audit trail and in status history.

A deployment is archived when all of these hold:
- it was created more than ARCHIVE_AFTER (90 days) before now;
- it has ended (success, failed or rolled_back): an active one is somebody's work;
- it is not what keeps the live release live (a `success` of the service's deployed artifact):
  the list keeps showing what runs, however long ago it went live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pilothouse.deployments.transitions import TERMINAL

ARCHIVE_AFTER = timedelta(days=90)


@dataclass(frozen=True)
class Facts:
    """What the rule needs to know about one deployment."""

    created_at: datetime
    status: str
    archived: bool
    live: bool  # a success of the artifact that is deployed now


def cutoff(now: datetime) -> datetime:
    """Deployments created before this are old enough to archive."""
    return now - ARCHIVE_AFTER


def archivable(facts: Facts, now: datetime) -> bool:
    """Whether the deployment is archived on this pass."""
    return (
        not facts.archived
        and facts.created_at < cutoff(now)
        and facts.status in TERMINAL
        and not (facts.live and facts.status == "success")
    )
