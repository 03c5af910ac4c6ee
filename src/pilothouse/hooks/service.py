"""Deploy hooks: admins create them; a signed delivery registers the commit as an artifact of
the service its rule names and records a deployment of it. Every call to an existing hook is
audited, the refused ones too (in their own transaction, since the refused request's own is
rolled back); a call to a name no hook has is only logged (the name is the caller's choice)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require
from pilothouse.artifacts import service as artifacts
from pilothouse.artifacts.models import Artifact
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import Keyring, open_value, seal_value
from pilothouse.core.db import Database
from pilothouse.core.logging import get_logger
from pilothouse.deployments import service as deployments
from pilothouse.errors import AlreadyLive, Conflict, NotFound, PilothouseError
from pilothouse.hooks import signature
from pilothouse.hooks.models import DeployHook, HookDelivery
from pilothouse.hooks.schemas import HookCreate
from pilothouse.services import service as services
from pilothouse.users.models import User

log = get_logger("pilothouse.hooks")


async def create_hook(
    session: AsyncSession, actor: Principal, keyring: Keyring, body: HookCreate
) -> DeployHook:
    """A deploy hook (admin: it deploys without a token); each rule's service must exist."""
    require(actor, "manage_environments")
    if await session.scalar(sa.select(DeployHook.id).where(DeployHook.name == body.name)):
        raise Conflict(f"hook {body.name!r} already exists")
    for rule in body.rules:
        await services.get_service(session, actor, rule.service, environment=rule.environment)
    hook = DeployHook(
        owner_id=actor.id,
        name=body.name,
        secret_encrypted=seal_value(body.secret.get_secret_value(), keyring),
        key_id=keyring.current.hex(),
        rules=[r.model_dump(exclude_none=True) for r in body.rules],
        is_active=True,
    )
    session.add(hook)
    await session.flush()
    audit.record(
        session, actor, "create", "deploy_hook", hook.id, {"name": hook.name, "rules": hook.rules}
    )
    return hook


async def list_hooks(session: AsyncSession, actor: Principal) -> Sequence[DeployHook]:
    require(actor, "manage_environments")
    return (await session.scalars(sa.select(DeployHook).order_by(DeployHook.name))).all()


async def delete_hook(session: AsyncSession, actor: Principal, name: str) -> None:
    require(actor, "manage_environments")
    hook = await session.scalar(sa.select(DeployHook).where(DeployHook.name == name))
    if hook is None:
        raise NotFound(f"hook {name!r} not found")
    await session.delete(hook)
    audit.record(session, actor, "delete", "deploy_hook", hook.id, {"name": name})


async def reseal_batch(session: AsyncSession, keyring: Keyring, *, batch: int = 500) -> int:
    """Re-encrypt up to `batch` hook secrets still sealed with an older key; returns how many
    (`pilothouse keys rotate` calls it until it returns 0)."""
    current = keyring.current.hex()
    stale = list(
        await session.scalars(
            sa.select(DeployHook)
            .where(DeployHook.key_id != current)
            .order_by(DeployHook.id)
            .limit(batch)
            .with_for_update()
        )
    )
    for hook in stale:
        hook.secret_encrypted = seal_value(open_value(hook.secret_encrypted, keyring), keyring)
        hook.key_id = current
    return len(stale)


@dataclass(frozen=True)
class Answer:
    status: int
    outcome: str
    deployment_id: str | None = None
    version: str | None = None


def _actor(hook: DeployHook) -> Principal:
    """The hook acts for its owner, named as the hook in history and audit; its rules alone
    say what it may touch."""
    return Principal(id=hook.owner_id, name=f"hook:{hook.name}", role="admin")


async def _audit(db: Database, hook: DeployHook, answer: Answer, extra: dict[str, str]) -> None:
    async with db.session() as session:
        audit.record(
            session,
            _actor(hook),
            "hook_call",
            "deploy_hook",
            hook.id,
            {"status": answer.status, "outcome": answer.outcome, **extra},
        )


def _owner_refusal(hook: DeployHook, owner: User | None) -> Answer | None:
    """The hook acts with its creator's admin rights: refused once the creator is gone,
    deactivated or no longer an admin."""
    if owner is not None and owner.is_active and owner.role == "admin":
        return None
    who = repr(owner.name) if owner is not None else "(deleted)"
    state = "deleted" if owner is None else "inactive" if not owner.is_active else owner.role
    return Answer(
        403,
        f"hook {hook.name!r} acts for its creator {who}, who is no longer an active admin "
        f"({state}); an admin must create the hook anew",
    )


async def receive(
    db: Database,
    keyring: Keyring,
    name: str,
    headers: dict[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> Answer:
    """Verify, de-duplicate and carry out one delivery; audited when the hook exists."""
    async with db.session() as session:
        hook = await session.scalar(sa.select(DeployHook).where(DeployHook.name == name))
        owner = await session.get(User, hook.owner_id) if hook is not None else None
        secret = open_value(hook.secret_encrypted, keyring) if hook else None
    if hook is None:
        log.info("deploy hook call to an unknown hook", hook=name[:100])
        return Answer(404, f"hook {name[:100]!r} not found")
    if not hook.is_active or secret is None:
        answer = Answer(404, f"hook {name!r} not found")
        await _audit(db, hook, answer, {})
        return answer
    checked = signature.check_signature(secret, headers, body, time.time() if now is None else now)
    if isinstance(checked, signature.Refused):
        answer = Answer(checked.status, checked.reason)
        await _audit(db, hook, answer, {})
        return answer
    fmt, delivery = checked
    extra = {"format": fmt, "delivery": delivery, "event": headers.get("x-github-event", "")}
    refused = _owner_refusal(hook, owner)
    if refused is not None:
        await _audit(db, hook, refused, extra)
        return refused
    key = signature.replay_key(fmt, delivery, body)
    try:
        answer = await _carry_out(db, hook, fmt, key, headers, body)
    except (IntegrityError, _Replay):
        answer = _replay(fmt, delivery)
    except PilothouseError as exc:
        answer = Answer(exc.status, exc.message)
        await _remember(db, hook, key, f"failed: {exc.message}")
    await _audit(db, hook, answer, extra)
    return answer


def _replay(fmt: str, delivery: str) -> Answer:
    if fmt == "github":
        return Answer(
            409, "this body was already received (replay refused, whatever its delivery id)"
        )
    return Answer(409, f"delivery {delivery} was already received (replay refused)")


async def _remember(db: Database, hook: DeployHook, key: str, outcome: str) -> None:
    """Keep the replay key of a request that failed after its signature checked out."""
    try:
        async with db.session() as session:
            session.add(HookDelivery(hook_id=hook.id, delivery=key, outcome=outcome[:500]))
    except IntegrityError:
        pass


async def _carry_out(
    db: Database, hook: DeployHook, fmt: str, key: str, headers: dict[str, str], body: bytes
) -> Answer:
    async with db.session() as session:
        seen = await session.scalar(
            sa.select(HookDelivery.id).where(
                HookDelivery.hook_id == hook.id, HookDelivery.delivery == key
            )
        )
        if seen is not None:
            raise _Replay
        record = HookDelivery(hook_id=hook.id, delivery=key, outcome="received")
        session.add(record)
        await session.flush()  # the unique key refuses a concurrent replay here
        row = await session.get(DeployHook, hook.id)
        if row is not None:
            row.last_delivery_at = utcnow()
        answer = await _deploy(session, hook, fmt, headers, body)
        record.outcome = answer.outcome[:500]
        if answer.deployment_id:
            record.deployment_id = uuid.UUID(answer.deployment_id)
        if answer.status >= 400:
            raise _Failed(answer)
        return answer


class _Replay(Exception):
    """The replay key was remembered before."""


class _Failed(PilothouseError):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.outcome)
        self.status = answer.status


async def _deploy(
    session: AsyncSession, hook: DeployHook, fmt: str, headers: dict[str, str], body: bytes
) -> Answer:
    event = signature.parse_event(fmt, headers.get("x-github-event"), body)
    if isinstance(event, signature.Refused):
        return Answer(event.status, event.reason)
    if isinstance(event, signature.Ignored):
        return Answer(202, f"ignored: {event.reason}")
    rules = [signature.Rule(**r) for r in hook.rules]
    rule = signature.match(rules, event)
    if rule is None:
        return Answer(202, f"ignored: no rule for {event.kind} {event.name}")
    actor = _actor(hook)
    svc = await services.get_service(session, actor, rule.service, environment=rule.environment)
    version, tag = signature.version_of(event)
    existing = await session.scalar(
        sa.select(Artifact).where(
            Artifact.service_id == svc.id,
            Artifact.version == version,
            Artifact.deleted_at.is_(None),
        )
    )
    if existing is None:
        await artifacts.register_artifact(
            session,
            actor,
            service=str(svc.id),
            version=version,
            commit_sha=event.commit,
            git_tag=tag,
            changelog=event.message,
        )
    elif existing.commit_sha != event.commit:
        return Answer(409, f"version {version} of {svc.name} is registered for another commit")
    try:
        deployment = await deployments.create_deployment(
            session,
            actor,
            service=str(svc.id),
            version=version,
            triggered_by="github_action" if fmt == "github" else "ci",
            ci_run_id=event.run_id,
            commit_message=event.message,
        )
    except AlreadyLive:
        return Answer(202, f"ignored: {svc.name} {version} is already live", version=version)
    return Answer(202, "deployed", str(deployment.id), version)
