"""SLA alert markers move from health_states to job_slots (the lease kit's slot claims)

Before the lease kit, the month's "SLA breached" alert of a service was marked sent by a
health_states row whose target is `sla:<service id>:<YYYY-MM>`. The SLA check now claims the
job slot ("healthchecks.sla_alert", "<service id>", <first instant of the month, UTC>) instead,
so without this copy an upgrade in the middle of a month would send each breaching service's
alert a second time. The copied rows are what `Leases.claim_slot` writes; the slot pruning
(35 days) forgets them like any other claim.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:30:00
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB = "healthchecks.sla_alert"  # healthchecks.service.SLA_ALERT
WORKER = "migration 0008"
PREFIX = "sla:"

health_states = sa.table(
    "health_states",
    sa.column("target", sa.String),
    sa.column("service_id", sa.Uuid),
    sa.column("status", sa.String),
    sa.column("streak_status", sa.String),
    sa.column("streak", sa.Integer),
    sa.column("reasons", sa.JSON),
    sa.column("changed_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
job_slots = sa.table(
    "job_slots",
    sa.column("job", sa.String),
    sa.column("key", sa.String),
    sa.column("slot", sa.DateTime(timezone=True)),
    sa.column("worker", sa.String),
    sa.column("claimed_at", sa.DateTime(timezone=True)),
)


def _aware(value: datetime | None) -> datetime:
    """A stored timestamp as aware UTC (SQLite hands back naive UTC text)."""
    if value is None:
        return datetime.now(UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stored(value: datetime, sqlite: bool) -> datetime:
    """How the application's UTCDateTime column writes a timestamp: naive UTC on SQLite."""
    return value.replace(tzinfo=None) if sqlite else value


def _month_start(month: str) -> datetime | None:
    try:
        start = datetime.strptime(month, "%Y-%m")
    except ValueError:
        return None
    return start.replace(tzinfo=UTC)


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    markers = bind.execute(
        sa.select(health_states.c.target, health_states.c.changed_at).where(
            health_states.c.target.like(PREFIX + "%")
        )
    ).all()
    claimed = {
        (key, _aware(slot))
        for key, slot in bind.execute(
            sa.select(job_slots.c.key, job_slots.c.slot).where(job_slots.c.job == JOB)
        ).all()
    }
    rows = []
    for target, changed_at in markers:
        _, _, rest = target.partition(PREFIX)
        service_id, _, month = rest.rpartition(":")
        slot = _month_start(month)
        if not service_id or slot is None or (service_id, slot) in claimed:
            continue
        claimed.add((service_id, slot))
        rows.append(
            {
                "job": JOB,
                "key": service_id,
                "slot": _stored(slot, sqlite),
                "worker": WORKER,
                "claimed_at": _stored(_aware(changed_at), sqlite),
            }
        )
    if rows:
        bind.execute(job_slots.insert(), rows)
    bind.execute(sa.delete(health_states).where(health_states.c.target.like(PREFIX + "%")))


def downgrade() -> None:
    """Write the markers back for the code that reads them; the job_slots rows stay (code that
    claims slots still finds them, and the slot pruning forgets them after 35 days)."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    slots = bind.execute(
        sa.select(job_slots.c.key, job_slots.c.slot, job_slots.c.claimed_at).where(
            job_slots.c.job == JOB
        )
    ).all()
    present = set(
        bind.execute(
            sa.select(health_states.c.target).where(health_states.c.target.like(PREFIX + "%"))
        ).scalars()
    )
    for key, slot, claimed_at in slots:
        target = f"{PREFIX}{key}:{_aware(slot):%Y-%m}"
        if target in present:
            continue
        present.add(target)
        at = _stored(_aware(claimed_at), sqlite)
        bind.execute(
            health_states.insert().values(
                target=target,
                service_id=_uuid(key),
                status="unhealthy",
                streak_status="unhealthy",
                streak=1,
                reasons=["sla"],
                changed_at=at,
                updated_at=at,
            )
        )


def _uuid(key: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(key)
    except ValueError:
        return None
