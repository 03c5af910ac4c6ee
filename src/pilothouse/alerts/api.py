"""/api/v1/channels: notification channels (owned records; credentials sealed, shown masked)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pilothouse.alerts import service
from pilothouse.alerts.models import NotificationChannel
from pilothouse.alerts.schemas import ChannelCreate, ChannelRead, ChannelTest, ChannelUpdate
from pilothouse.alerts.settings import split
from pilothouse.deps import Caller, Keys, Session

router = APIRouter(prefix="/channels", tags=["alerts"])


def _read(channel: NotificationChannel) -> ChannelRead:
    read = ChannelRead.model_validate(channel)
    read.config = split(channel.kind, dict(channel.config or {}))[0]  # masked, even if legacy
    return read


@router.post("", response_model=ChannelRead, status_code=201, summary="Add a channel (admin)")
async def add(body: ChannelCreate, session: Session, caller: Caller, keys: Keys) -> ChannelRead:
    channel = await service.add_channel(
        session,
        caller,
        keys,
        name=body.name,
        kind=body.kind,
        config=body.config,
        environment=body.environment,
        deploy_events=body.deploy_events,
        deploy_environments=body.deploy_environments,
    )
    return _read(channel)


@router.get(
    "",
    response_model=list[ChannelRead],
    summary="Channels you may see, credentials masked, with their last delivery outcome",
)
async def list_(session: Session, caller: Caller) -> list[ChannelRead]:
    return [_read(c) for c in await service.list_channels(session, caller)]


@router.get("/{ref}", response_model=ChannelRead, summary="One channel, by name or id")
async def get(ref: str, session: Session, caller: Caller) -> ChannelRead:
    return _read(await service.get_channel(session, caller, ref))


@router.patch("/{ref}", response_model=ChannelRead, summary="Change settings or switch (admin)")
async def update(
    ref: str, body: ChannelUpdate, session: Session, caller: Caller, keys: Keys
) -> ChannelRead:
    channel = await service.update_channel(
        session,
        caller,
        keys,
        ref,
        config=body.config,
        is_active=body.is_active,
        deploy_events=body.deploy_events,
        deploy_environments=body.deploy_environments,
    )
    return _read(channel)


@router.delete("/{ref}", status_code=204, summary="Remove a channel (admin)")
async def delete(ref: str, session: Session, caller: Caller) -> Response:
    await service.delete_channel(session, caller, ref)
    return Response(status_code=204)


@router.post("/{ref}/test", response_model=ChannelTest, summary="Send a test message (admin)")
async def test(ref: str, session: Session, caller: Caller, keys: Keys) -> ChannelTest:
    delivered, detail = await service.test_channel(session, caller, keys, ref)
    return ChannelTest(delivered=delivered, detail=detail)
