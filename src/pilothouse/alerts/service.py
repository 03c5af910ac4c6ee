"""Notification channels: add, list, delete, test; and sending an alert to every channel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require
from pilothouse.alerts.notify import DeliveryFailed, config_problem, deliver
from pilothouse.audit import service as audit
from pilothouse.core.db import Database
from pilothouse.core.logging import get_logger
from pilothouse.errors import Conflict, NotFound, ValidationFailed
from pilothouse.healthchecks.models import NotificationChannel

log = get_logger("pilothouse.alerts")


async def add_channel(
    session: AsyncSession, actor: Principal, *, name: str, kind: str, config: dict[str, Any]
) -> NotificationChannel:
    """Add a channel (admin)."""
    require(actor, "manage_environments")
    if await session.scalar(
        sa.select(NotificationChannel.id).where(NotificationChannel.name == name)
    ):
        raise Conflict(f"channel {name!r} already exists")
    channel = NotificationChannel(owner_id=actor.id, name=name, kind=kind, config=config)
    session.add(channel)
    await session.flush()
    audit.record(
        session, actor, "create", "notification_channel", channel.id, {"name": name, "kind": kind}
    )
    return channel


async def list_channels(session: AsyncSession, actor: Principal) -> Sequence[NotificationChannel]:
    require(actor, "read")
    return (
        await session.scalars(sa.select(NotificationChannel).order_by(NotificationChannel.name))
    ).all()


async def get_channel(session: AsyncSession, actor: Principal, name: str) -> NotificationChannel:
    require(actor, "read")
    channel = await session.scalar(
        sa.select(NotificationChannel).where(NotificationChannel.name == name)
    )
    if channel is None:
        raise NotFound(f"channel {name!r} not found")
    return channel


async def delete_channel(session: AsyncSession, actor: Principal, name: str) -> None:
    channel = await get_channel(session, actor, name)
    require(actor, "manage_environments")
    await session.delete(channel)
    audit.record(session, actor, "delete", "notification_channel", channel.id, {"name": name})


async def test_channel(session: AsyncSession, actor: Principal, name: str) -> tuple[bool, str]:
    """Send a test message through a channel (admin); (delivered, detail)."""
    channel = await get_channel(session, actor, name)
    require(actor, "manage_environments")
    problem = config_problem(channel.kind, channel.config)
    if problem:  # stored before settings were checked on write: say what to fix
        raise ValidationFailed(*problem)
    message = {"event": "test", "text": f"pilothouse test message for channel {channel.name}"}
    try:
        await deliver(channel.kind, channel.config, message)
    except DeliveryFailed as exc:
        return False, str(exc)
    return True, "delivered"


async def broadcast(channels: Sequence[NotificationChannel], message: dict[str, Any]) -> int:
    """Send to every active channel; returns how many accepted it (failures are logged)."""
    delivered = 0
    for channel in channels:
        if not channel.is_active:
            continue
        try:
            await deliver(channel.kind, channel.config, message)
            delivered += 1
        except DeliveryFailed as exc:
            log.warning("alert not delivered", channel=channel.name, reason=str(exc))
    return delivered


async def active_channels(db: Database) -> list[NotificationChannel]:
    """The channels every alert goes to."""
    async with db.session(write=False) as session:
        query = sa.select(NotificationChannel).where(NotificationChannel.is_active)
        return list(await session.scalars(query))
