"""Notification channels: add, list, update, delete, test; and sending an alert to every
channel, each in isolation, with retries, its outcome recorded on the channel.

Channels are owned records: a non-admin sees the channels they own and those of environments
granted to them; anything else is 404, and the admin check comes after the lookup, so it never
reveals that a channel exists. Credentials are sealed (alerts/settings.py says which)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, visible
from pilothouse.alerts import settings as channel_settings
from pilothouse.alerts.models import DEPLOY_EVENTS, NotificationChannel
from pilothouse.alerts.notify import DeliveryFailed, deliver
from pilothouse.audit import service as audit
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import CryptoError, Keyring, open_value, seal_value
from pilothouse.core.db import Database, id_or_name
from pilothouse.core.keys import process_keyring
from pilothouse.core.logging import get_logger
from pilothouse.core.urls import mask_text
from pilothouse.environments import service as environments
from pilothouse.errors import Conflict, NotFound, ValidationFailed

log = get_logger("pilothouse.alerts")

#: Seconds to wait before the 2nd and 3rd try of a delivery (3 tries in all).
RETRY_DELAYS: tuple[float, ...] = (1.0, 4.0)


def _visible(actor: Principal) -> sa.ColumnElement[bool]:
    return visible(actor, NotificationChannel.owner_id, NotificationChannel.environment_id)


def _seal(
    channel: NotificationChannel, kind: str, config: dict[str, Any], keyring: Keyring
) -> None:
    """Validate the settings, keep what may be shown in `config`, seal the rest."""
    shown, sealed = channel_settings.split(kind, channel_settings.validate(kind, config))
    channel.config = shown
    channel.secrets_encrypted = seal_value(json.dumps(sealed), keyring) if sealed else None
    channel.key_id = keyring.current.hex() if sealed else ""  # "": nothing to seal


def open_config(channel: NotificationChannel, keyring: Keyring) -> dict[str, Any]:
    """The channel's full settings, credentials included (only for delivery)."""
    config = dict(channel.config or {})
    if channel.secrets_encrypted:
        config.update(json.loads(open_value(channel.secrets_encrypted, keyring)))
    return config


async def add_channel(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    *,
    name: str,
    kind: str,
    config: dict[str, Any],
    environment: str | None = None,
    deploy_events: Sequence[str] = (),
    deploy_environments: Sequence[str] = (),
) -> NotificationChannel:
    """Add a channel (admin); its settings are validated, its credentials sealed."""
    require(actor, "manage_environments")
    env_id = None
    if environment:
        env_id = (await environments.get_environment(session, actor, environment)).id
    if await session.scalar(
        sa.select(NotificationChannel.id).where(NotificationChannel.name == name)
    ):
        raise Conflict(f"channel {name!r} already exists")
    channel = NotificationChannel(
        owner_id=actor.id, environment_id=env_id, name=name, kind=kind, config={}
    )
    _seal(channel, kind, config, keyring)
    channel.deploy_events = _events(deploy_events)
    channel.deploy_environments = await _environments(session, actor, deploy_environments)
    session.add(channel)
    await session.flush()
    audit.record(
        session,
        actor,
        "create",
        "notification_channel",
        channel.id,
        {
            "name": name,
            "kind": kind,
            "config": channel.config,
            "deploy_events": channel.deploy_events,
            "deploy_environments": channel.deploy_environments,
        },
    )
    return channel


def _events(names: Sequence[str]) -> list[str]:
    """The opted-in deployment events, each once, in their natural order (422 on an unknown
    one, naming it: the API's schema already refuses them, this guards other callers)."""
    for index, name in enumerate(names):
        if name not in DEPLOY_EVENTS:
            raise ValidationFailed(
                f"deploy_events.{index}", f"must be one of {', '.join(DEPLOY_EVENTS)}"
            )
    return [e for e in DEPLOY_EVENTS if e in names]


async def _environments(session: AsyncSession, actor: Principal, names: Sequence[str]) -> list[str]:
    """The environments' names, each checked to exist (422 naming the entry otherwise)."""
    found: list[str] = []
    for index, name in enumerate(names):
        try:
            env = await environments.get_environment(session, actor, name)
        except NotFound:
            raise ValidationFailed(
                f"deploy_environments.{index}", f"no environment named {name!r}"
            ) from None
        if env.name not in found:
            found.append(env.name)
    return found


async def list_channels(session: AsyncSession, actor: Principal) -> Sequence[NotificationChannel]:
    """The channels the actor may see."""
    query = sa.select(NotificationChannel).where(_visible(actor))
    return (await session.scalars(query.order_by(NotificationChannel.name))).all()


async def get_channel(session: AsyncSession, actor: Principal, ref: str) -> NotificationChannel:
    """A channel the actor may see, by id or name; otherwise NotFound."""
    channel = await session.scalar(
        sa.select(NotificationChannel).where(
            _visible(actor), id_or_name(NotificationChannel.id, NotificationChannel.name, ref)
        )
    )
    if channel is None:
        raise NotFound(f"channel {ref!r} not found")
    return channel


async def update_channel(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    ref: str,
    *,
    config: dict[str, Any] | None = None,
    is_active: bool | None = None,
    deploy_events: Sequence[str] | None = None,
    deploy_environments: Sequence[str] | None = None,
) -> NotificationChannel:
    """Replace a channel's settings (validated, sealed), its deployment opt-ins, and/or switch
    it on or off (admin)."""
    channel = await get_channel(session, actor, ref)
    require(actor, "manage_environments")
    changes: dict[str, Any] = {}
    if config is not None:
        _seal(channel, channel.kind, config, keyring)
        changes["config"] = channel.config
    if is_active is not None:
        channel.is_active = is_active
        changes["is_active"] = is_active
    if deploy_events is not None:
        channel.deploy_events = changes["deploy_events"] = _events(deploy_events)
    if deploy_environments is not None:
        channel.deploy_environments = await _environments(session, actor, deploy_environments)
        changes["deploy_environments"] = channel.deploy_environments
    audit.record(session, actor, "update", "notification_channel", channel.id, changes)
    return channel


async def delete_channel(session: AsyncSession, actor: Principal, ref: str) -> None:
    channel = await get_channel(session, actor, ref)
    require(actor, "manage_environments")
    await session.delete(channel)
    audit.record(session, actor, "delete", "notification_channel", channel.id, {"name": ref})


async def test_channel(
    session: AsyncSession, actor: Principal, keyring: Keyring, ref: str
) -> tuple[bool, str]:
    """Send a test message through a channel (admin), once; (delivered, detail)."""
    channel = await get_channel(session, actor, ref)
    require(actor, "manage_environments")
    message = {"event": "test", "text": f"pilothouse test message for channel {channel.name}"}
    endpoint = _endpoint(channel, keyring)
    if endpoint.problem is None:
        # Settings stored before they were checked on write: a 422 naming what to fix.
        channel_settings.validate(channel.kind, endpoint.config)
    outcome = await _deliver(endpoint, message, delays=())
    _apply(channel, outcome)
    return outcome.error is None, outcome.error or "delivered"


# -- delivery -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A channel ready to deliver: its settings opened (or why they could not be)."""

    id: uuid.UUID
    name: str
    kind: str
    config: dict[str, Any] = field(repr=False)  # credentials in clear: never printed
    problem: str | None = None


@dataclass(frozen=True)
class Outcome:
    channel_id: uuid.UUID
    name: str
    error: str | None  # None: delivered
    tries: int


def _endpoint(channel: NotificationChannel, keyring: Keyring | None) -> Endpoint:
    try:
        if channel.secrets_encrypted and keyring is None:
            raise CryptoError("no master key in this process")
        config = open_config(channel, keyring) if keyring else dict(channel.config or {})
    except (CryptoError, ValueError) as exc:
        return Endpoint(channel.id, channel.name, channel.kind, {}, f"cannot open settings: {exc}")
    return Endpoint(channel.id, channel.name, channel.kind, config)


async def active_channels(db: Database, keyring: Keyring | None = None) -> list[Endpoint]:
    """The channels every alert goes to, settings opened (with this process's keyring unless
    one is given). A channel whose settings cannot be opened is kept, with its problem."""
    if keyring is None:
        try:
            keyring = process_keyring()
        except CryptoError:
            keyring = None
    async with db.session(write=False) as session:
        query = sa.select(NotificationChannel).where(NotificationChannel.is_active)
        return endpoints(await session.scalars(query), keyring)


def endpoints(channels: Iterable[NotificationChannel], keyring: Keyring | None) -> list[Endpoint]:
    """Channels ready to deliver (a channel whose settings cannot be opened keeps its problem)."""
    return [_endpoint(c, keyring) for c in channels]


async def _deliver(
    endpoint: Endpoint, message: dict[str, Any], *, delays: Sequence[float]
) -> Outcome:
    """Deliver to one channel, retrying after each of `delays`; never raises."""
    if endpoint.problem:
        return Outcome(endpoint.id, endpoint.name, endpoint.problem, 0)
    error = None
    tries = 0
    for wait in (0.0, *delays):
        if wait:
            await asyncio.sleep(wait)
        tries += 1
        try:
            await deliver(endpoint.kind, endpoint.config, message)
            return Outcome(endpoint.id, endpoint.name, None, tries)
        except DeliveryFailed as exc:
            error = str(exc)
        except Exception as exc:  # a bad channel must never silence the others
            error = f"{endpoint.kind} delivery failed: {type(exc).__name__}"
    return Outcome(endpoint.id, endpoint.name, mask_text(str(error))[:500], tries)


def _apply(channel: NotificationChannel, outcome: Outcome) -> None:
    if outcome.error is None:
        channel.last_success_at = utcnow()
        channel.consecutive_failures = 0
    else:
        channel.last_failure_at = utcnow()
        channel.last_error = outcome.error
        channel.consecutive_failures = (channel.consecutive_failures or 0) + 1


async def _record(db: Database | None, outcomes: Sequence[Outcome]) -> None:
    """Log failures and record each outcome on its channel (best effort: the store may be
    down, and delivery mattered more)."""
    for outcome in outcomes:
        if outcome.error:
            log.warning(
                "alert not delivered",
                channel=outcome.name,
                tries=outcome.tries,
                reason=outcome.error,
            )
    if db is None or not outcomes:
        return
    try:
        async with db.session() as session:
            rows = await session.scalars(
                sa.select(NotificationChannel).where(
                    NotificationChannel.id.in_([o.channel_id for o in outcomes])
                )
            )
            by_id = {row.id: row for row in rows}
            for outcome in outcomes:
                if outcome.channel_id in by_id:
                    _apply(by_id[outcome.channel_id], outcome)
    except Exception as exc:
        log.warning("channel outcomes not recorded", reason=type(exc).__name__)


async def _retry(
    channels: Sequence[Endpoint], message: dict[str, Any], db: Database | None
) -> list[Outcome]:
    """The 2nd and 3rd tries of the channels whose first try failed."""
    await asyncio.sleep(RETRY_DELAYS[0])
    later = await asyncio.gather(*(_deliver(c, message, delays=RETRY_DELAYS[1:]) for c in channels))
    outcomes = [Outcome(o.channel_id, o.name, o.error, o.tries + 1) for o in later]
    await _record(db, outcomes)
    return outcomes


#: Retries running in the background (kept referenced until they end).
_retrying: set[asyncio.Task[list[Outcome]]] = set()


async def settle() -> None:
    """Wait for the retries still running in the background."""
    while _retrying:
        await asyncio.gather(*list(_retrying), return_exceptions=True)


async def broadcast(
    channels: Sequence[Endpoint],
    message: dict[str, Any],
    *,
    db: Database | None = None,
    wait: bool = False,
) -> int:
    """Send to every channel at once, each isolated from the others; a channel whose first
    try fails is tried twice more with backoff (3 tries). The first tries are awaited (each
    bounded by the delivery timeout); the retries run in the background unless `wait`, so a
    dead channel does not hold up the caller (the health monitor). With `db`, each channel's
    final outcome is recorded on it (last success, last failure and its reason). Returns how
    many channels accepted the message (so far)."""
    first = await asyncio.gather(*(_deliver(c, message, delays=()) for c in channels))
    again = [c for c, o in zip(channels, first, strict=True) if o.error and not c.problem]
    retrying = {c.id for c in again} if RETRY_DELAYS else set()
    await _record(db, [o for o in first if o.channel_id not in retrying])
    delivered = sum(1 for o in first if o.error is None)
    if retrying:
        job = _retry(again, message, db)
        if wait:
            delivered += sum(1 for o in await job if o.error is None)
        else:
            task = asyncio.create_task(job)
            _retrying.add(task)
            task.add_done_callback(_retrying.discard)
    return delivered


async def notify(
    db: Database,
    message: dict[str, Any],
    *,
    keyring: Keyring | None = None,
    wait: bool = False,
) -> int:
    """Send an alert to every active channel and record each outcome (see broadcast);
    returns how many accepted it."""
    return await broadcast(await active_channels(db, keyring), message, db=db, wait=wait)


async def reseal_batch(session: AsyncSession, keyring: Keyring, *, batch: int = 500) -> int:
    """Re-seal up to `batch` channels' credentials still sealed with an older key (or, from
    before sealing, still in clear in `config`); returns how many. `keys rotate` calls it."""
    current = keyring.current.hex()
    stale = list(
        await session.scalars(
            sa.select(NotificationChannel)
            .where(
                sa.or_(
                    NotificationChannel.key_id.is_(None),  # from before sealing: look at it
                    sa.and_(
                        NotificationChannel.key_id != "", NotificationChannel.key_id != current
                    ),
                )
            )
            .limit(batch)
            .with_for_update()
        )
    )
    done = 0
    for channel in stale:
        shown, sealed = channel_settings.split(channel.kind, open_config(channel, keyring))
        channel.config = shown
        channel.secrets_encrypted = seal_value(json.dumps(sealed), keyring) if sealed else None
        channel.key_id = current if sealed else ""
        done += 1
    return done
