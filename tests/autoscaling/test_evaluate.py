"""One evaluation round against the store: CPU and memory windows read from raw samples and
rollups (both stores: the aggregate is grouped in SQL), the decision carried out as a `scale`
deployment with an event and a message, cooldowns from the events, the freeze during a rollout,
a custom metric through the metrics capability, and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse import migrations
from pilothouse.access import Principal
from pilothouse.artifacts.models import Artifact
from pilothouse.autoscaling import evaluate
from pilothouse.autoscaling import service as scaling
from pilothouse.autoscaling.models import ScalingCohort, ScalingEvent, ScalingPolicy
from pilothouse.autoscaling.rules import Decision
from pilothouse.autoscaling.schemas import DEFAULTS, PolicySet
from pilothouse.core.db import Database, make_sync_engine
from pilothouse.deployments.models import Deployment
from pilothouse.environments import service as environments
from pilothouse.metrics.samples import Sample, write_samples
from pilothouse.metrics.storage import rollup
from pilothouse.services import service as services
from pilothouse.services.models import Service

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
MIB = 1024 * 1024


async def _world(db: Database, admin: Principal, **policy: Any) -> Service:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="prod", type="production")
        svc = await services.create_service(
            session,
            admin,
            environment="prod",
            name="web",
            resources={"cpu_cores": 1.0, "memory_mb": 1024},
            command="run {port}",
        )
        svc.target_replicas = 2
        session.add(
            ScalingPolicy(
                **{
                    **DEFAULTS,
                    "min_instances": 1,
                    "max_instances": 4,
                    "evaluation_period_seconds": 60,
                    "scale_up_cooldown_seconds": 120,
                    "scale_down_cooldown_seconds": 300,
                    **policy,
                },
                service_id=svc.id,
                environment_id=svc.environment_id,
            )
        )
        return svc


async def _load(db: Database, start: datetime, seconds: int, cpu: float, memory_mb: float) -> None:
    """Two replicas' built-in samples every 10 s."""
    batch = []
    for i in range(0, seconds, 10):
        for replica in ("r1", "r2"):
            tags = {"environment": "prod", "service": "web", "replica": replica}
            at = start + timedelta(seconds=i)
            batch.append(Sample("pilothouse_replica_cpu_percent", tags, cpu, at))
            batch.append(Sample("pilothouse_replica_memory_bytes", tags, memory_mb * MIB, at))
    await write_samples(db, batch)


async def _events(db: Database) -> list[ScalingEvent]:
    async with db.session(write=False) as session:
        return list(await session.scalars(sa.select(ScalingEvent).order_by(ScalingEvent.timestamp)))


async def _replicas(db: Database) -> int:
    async with db.session(write=False) as session:
        return int(await session.scalar(sa.select(Service.target_replicas)) or 0)


async def test_round_scales_up_records_and_respects_cooldown_and_rollouts(
    db: Database, admin: Principal
) -> None:
    svc = await _world(db, admin)
    async with db.session() as session:  # a live artifact: scaling records a scale deployment
        art = Artifact(
            owner_id=admin.id, service_id=svc.id, version="v1", commit_sha="a" * 40, deployed=True
        )
        session.add(art)
    # Ten minutes at 90% CPU, half the memory: rolled up for the first part, raw after.
    await _load(db, T0, 600, cpu=90.0, memory_mb=512)
    await rollup(db, T0 + timedelta(seconds=420))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    now = T0 + timedelta(seconds=600)
    done = await evaluate.evaluate_round(db, now, send=send)
    assert (done.evaluated, done.scaled) == (1, 1)
    decision = done.decisions[svc.id]
    assert decision.cpu is not None and abs(decision.cpu - 90.0) < 0.01
    assert decision.memory is not None and abs(decision.memory - 50.0) < 0.01
    [event] = await _events(db)
    assert (event.action, event.instances_before, event.instances_after) == ("scale_up", 2, 3)
    assert event.trigger_reason == "CPU 90% average for 2 minutes (threshold 80%)"
    assert event.triggered_by == "autoscaler" and event.success and event.deployment_id
    assert sent[0]["event"] == "scaling" and "scaled up from 2 to 3" in sent[0]["text"]
    assert await _replicas(db) == 3
    # The scale deployment is still active: the next round changes nothing (a rollout runs).
    later = now + timedelta(seconds=180)
    await _load(db, now, 240, cpu=90.0, memory_mb=512)
    done = await evaluate.evaluate_round(db, later, send=send)
    assert "rollout is in progress" in done.decisions[svc.id].reason
    # A scale decided just before a rollout started (a race) is refused by the release engine:
    # recorded as a failed event with the engine's reason, and sent.
    async with db.session(write=False) as session:
        [subject], _ = await evaluate.load_subjects(session, later + timedelta(hours=1), 0)
    raced = Decision("scale_up", 3, 4, "CPU 90% average for 2 minutes (threshold 80%)")
    message = await evaluate.carry_out(db, subject, raced, later)
    assert message is not None
    assert message["success"] is False and "FAILED: web already has an active" in message["text"]
    failed = (await _events(db))[-1]
    assert not failed.success and "wait for it to finish" in (failed.error_message or "")
    assert await _replicas(db) == 3
    async with db.session() as session:
        await session.execute(sa.update(Deployment).values(status="success"))
    # Within the period of the last evaluation: not due.
    assert (await evaluate.evaluate_round(db, later + timedelta(seconds=30))).evaluated == 0
    # The refused attempt started the up-cooldown (120 s): the next due round neither retries
    # nor records nor sends anything; the one after the cooldown scales.
    done = await evaluate.evaluate_round(db, later + timedelta(seconds=60), send=send)
    assert (done.scaled, done.failed) == (0, 0), done.decisions[svc.id]
    assert "scale-up cooldown still running after a refused attempt" in (
        done.decisions[svc.id].reason
    )
    assert len(await _events(db)) == 2 and len(sent) == 1
    await _load(db, later + timedelta(seconds=60), 60, cpu=90.0, memory_mb=512)
    done = await evaluate.evaluate_round(db, later + timedelta(seconds=120), send=send)
    assert done.scaled == 1 and await _replicas(db) == 4
    assert len(sent) == 2


async def test_custom_metric_and_missing_data(db: Database, admin: Principal) -> None:
    """A queue-depth policy in target mode reads through the metrics capability; with no data
    nothing shrinks."""
    await _world(
        db, admin, mode="target", metric="queue_depth", metric_target=10.0, datapoints_to_trigger=1
    )
    now = T0 + timedelta(seconds=300)
    done = await evaluate.evaluate_round(db, now)
    assert done.decisions.popitem()[1].action == "none"
    tags = {"environment": "prod", "service": "web"}
    await write_samples(
        db, [Sample("queue_depth", tags, 40.0, now + timedelta(seconds=s)) for s in (10, 40)]
    )
    done = await evaluate.evaluate_round(db, now + timedelta(seconds=60))
    decision = done.decisions.popitem()[1]
    assert (decision.action, decision.after) == ("scale_up", 4), decision
    assert "queue_depth 40 average for 1 minute (target 10)" in decision.reason
    assert (await evaluate.retain(db, now + timedelta(days=91))) == 1


async def test_a_service_stopped_or_deleted_mid_round_is_not_scaled(
    db: Database, admin: Principal
) -> None:
    """The round reads the service's status before deciding; a stop (or delete) landing between
    that read and the change is seen in the change's own transaction: nothing is scaled,
    recorded or sent."""
    await _world(db, admin)
    async with db.session(write=False) as session:
        [subject], _ = await evaluate.load_subjects(session, T0, 0)
    assert subject.status != "stopped"
    up = Decision("scale_up", 2, 3, "CPU 90% average for 2 minutes (threshold 80%)")
    for change in ({"status": "stopped"}, {"status": "deleted", "deleted_at": T0}):
        async with db.session() as session:
            await session.execute(sa.update(Service).values(**change))
        assert await evaluate.carry_out(db, subject, up, T0) is None
        assert await _replicas(db) == 2 and await _events(db) == []


async def _second_service(
    db: Database, admin: Principal, name: str = "api", **policy: Any
) -> Service:
    async with db.session() as session:
        svc = await services.create_service(
            session,
            admin,
            environment="prod",
            name=name,
            resources={"cpu_cores": 1.0, "memory_mb": 1024},
            command="run {port}",
        )
        session.add(
            ScalingPolicy(
                **{**DEFAULTS, "min_instances": 1, "max_instances": 4, **policy},
                service_id=svc.id,
                environment_id=svc.environment_id,
            )
        )
        return svc


async def _evaluated(
    db: Database, admin: Principal, names: tuple[str, ...] = ("web", "api")
) -> dict[str, datetime | None]:
    """Each service's last evaluation as `scaling show` reads it."""
    async with db.session(write=False) as session:
        out = {}
        for name in names:
            policy, svc = await scaling.get_policy(session, admin, name)
            out[name] = (await scaling.read(session, policy, svc)).evaluated_at
        return out


async def _cohorts(db: Database) -> int:
    async with db.session(write=False) as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(ScalingCohort)) or 0)


async def test_a_round_records_evaluations_per_cohort_with_each_policys_own_period(
    db: Database, admin: Principal
) -> None:
    """A round writes one row per cohort of policies evaluated together, not one per policy;
    each policy stays due on its own period, a new one joins a cohort of its period evaluated in
    the same round, one left behind by a disabled policy moves out, and the disabled one keeps
    its last evaluation."""
    every = ("web", "api", "worker")
    await _world(db, admin)  # web: every 60 s
    await _second_service(db, admin, evaluation_period_seconds=120)  # api: every 120 s
    async with db.session(write=False) as session:
        updated = set(await session.scalars(sa.select(ScalingPolicy.updated_at)))
    assert await _evaluated(db, admin) == {"web": None, "api": None}
    # New policies: evaluated at once, one cohort per period.
    assert (await evaluate.evaluate_round(db, T0)).evaluated == 2
    assert await _evaluated(db, admin) == {"web": T0, "api": T0}
    assert await _cohorts(db) == 2
    # 60 s on: only web is due; api keeps its time.
    t1 = T0 + timedelta(seconds=60)
    assert (await evaluate.evaluate_round(db, t1)).evaluated == 1
    assert await _evaluated(db, admin) == {"web": t1, "api": T0}
    assert (await evaluate.evaluate_round(db, t1 + timedelta(seconds=30))).evaluated == 0
    # A new policy every 60 s, like web's.
    worker = await _second_service(db, admin, "worker", evaluation_period_seconds=60)
    async with db.session(write=False) as session:
        updated |= set(
            await session.scalars(
                sa.select(ScalingPolicy.updated_at).where(ScalingPolicy.service_id == worker.id)
            )
        )
    # 120 s on: all due; web's and api's cohorts are whole (two rows updated), worker joins
    # web's.
    t2 = T0 + timedelta(seconds=120)
    assert (await evaluate.evaluate_round(db, t2)).evaluated == 3
    assert await _evaluated(db, admin, every) == {"web": t2, "api": t2, "worker": t2}
    assert await _cohorts(db) == 2
    async with db.session(write=False) as session:
        # An evaluation is not a change of the policy.
        assert set(await session.scalars(sa.select(ScalingPolicy.updated_at))) == updated
    # worker disabled: web moves out of their cohort, worker's last evaluation stays.
    async with db.session() as session:
        await session.execute(
            sa.update(ScalingPolicy)
            .where(ScalingPolicy.service_id == worker.id)
            .values(enabled=False)
        )
    t3 = T0 + timedelta(seconds=180)
    assert (await evaluate.evaluate_round(db, t3)).evaluated == 1
    assert await _evaluated(db, admin, every) == {"web": t3, "api": t2, "worker": t2}
    assert await _cohorts(db) == 3
    # web's and worker's policies deleted: their cohorts go.
    async with db.session() as session:
        await scaling.delete_policy(session, admin, "web")
        await scaling.delete_policy(session, admin, "worker")
    assert (await evaluate.evaluate_round(db, T0 + timedelta(seconds=240))).evaluated == 1
    assert await _cohorts(db) == 1


async def test_migration_0025_keeps_the_last_evaluation_both_ways(
    db_url: str, db: Database, admin: Principal
) -> None:
    """Downgrading copies each cohort's time back to its policies; upgrading makes a cohort per
    distinct time again."""
    await _world(db, admin)
    await evaluate.evaluate_round(db, T0)
    await db.dispose()
    engine = make_sync_engine(db_url)
    try:
        migrations.downgrade(db_url, "0025-1")  # the revision before 0025
        with engine.connect() as conn:
            [at] = conn.execute(sa.text("SELECT evaluated_at FROM scaling_policies")).scalars()
        if isinstance(at, str):  # SQLite
            at = datetime.fromisoformat(at)
        assert at is not None and at.replace(tzinfo=UTC) == T0
    finally:
        engine.dispose()
        migrations.upgrade(db_url)  # never leave the shared test database behind head
    assert await _evaluated(db, admin, ("web",)) == {"web": T0}


async def test_a_changed_or_deleted_policy_takes_effect_in_the_next_round(
    db: Database, admin: Principal
) -> None:
    """A round keeps each policy's rule for the next while its row is unchanged; a change of any
    rule field (a threshold, a scheduled floor) is decided on in the very next round, and a
    deleted policy is no longer evaluated (its replacement is, with its own fields)."""
    svc = await _world(db, admin)
    await _load(db, T0, 600, cpu=60.0, memory_mb=512)

    async def decided(at: datetime) -> Decision:
        done = await evaluate.evaluate_round(db, at, apply=False)
        assert done.evaluated == 1
        return done.decisions[svc.id]

    def rule() -> object:
        [entry] = [k for k in evaluate._KNOWN.values() if k.service_id == svc.id]
        return entry.rule

    now = T0 + timedelta(seconds=300)
    assert (await decided(now)).reason == "within thresholds over 2 minutes"
    kept = rule()
    assert (await decided(now + timedelta(seconds=10))).action == "none"
    assert rule() is kept  # unchanged: the same rule, not built again
    async with db.session() as session:
        await scaling.set_policy(session, admin, "web", PolicySet(scale_up_threshold=0.5))
    up = await decided(now + timedelta(seconds=20))
    assert (up.action, up.after) == ("scale_up", 3)
    assert up.reason == "CPU 60% average for 2 minutes (threshold 50%)"
    assert rule() is not kept
    floor = [{"cron": "* * * * *", "minutes": 60, "min_instances": 4}]
    async with db.session() as session:
        await scaling.set_policy(
            session, admin, "web", PolicySet(scale_up_threshold=0.8, schedules=floor)
        )
    raised = await decided(now + timedelta(seconds=30))
    assert (raised.action, raised.after) == ("scale_up", 4)
    assert raised.reason.startswith("below the floor: scheduled floor 4")
    async with db.session() as session:
        await scaling.delete_policy(session, admin, "web")
    assert (await evaluate.evaluate_round(db, now + timedelta(seconds=40))).evaluated == 0
    assert not [k for k in evaluate._KNOWN.values() if k.service_id == svc.id]
    async with db.session() as session:
        await scaling.set_policy(session, admin, "web", PolicySet(min_instances=1))
    assert (await decided(now + timedelta(seconds=50))).reason == (
        "within thresholds over 10 minutes"
    )


async def test_the_collector_pause_is_bounded_and_always_ends() -> None:
    """A round pauses the garbage collector while it reads and decides: never past its bound
    (a stalled store must not keep it off for the rest of the process), and never left off
    by a round that fails."""
    import asyncio
    import gc

    assert gc.isenabled()
    with evaluate.gc_paused(at_most=0.05):
        assert not gc.isenabled()
        await asyncio.sleep(0.3)
        assert gc.isenabled()  # the bound passed while the round still waited
    assert gc.isenabled()
    with pytest.raises(RuntimeError), evaluate.gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("the store went away")
    assert gc.isenabled()
