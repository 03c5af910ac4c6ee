"""/api/v1/channels: notification channels."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pilothouse.alerts import service
from pilothouse.alerts.notify import public_config
from pilothouse.alerts.schemas import ChannelCreate, ChannelRead, ChannelTest
from pilothouse.deps import Caller, Session

router = APIRouter(prefix="/channels", tags=["alerts"])


def _read(channel: object) -> ChannelRead:
    read = ChannelRead.model_validate(channel)
    read.config = public_config(read.config)
    return read


@router.post("", response_model=ChannelRead, status_code=201, summary="Add a channel (admin)")
async def add(body: ChannelCreate, session: Session, caller: Caller) -> ChannelRead:
    channel = await service.add_channel(
        session, caller, name=body.name, kind=body.kind, config=body.config
    )
    return _read(channel)


@router.get("", response_model=list[ChannelRead], summary="List channels (secrets shown as ***)")
async def list_(session: Session, caller: Caller) -> list[ChannelRead]:
    return [_read(c) for c in await service.list_channels(session, caller)]


@router.delete("/{name}", status_code=204, summary="Remove a channel (admin)")
async def delete(name: str, session: Session, caller: Caller) -> Response:
    await service.delete_channel(session, caller, name)
    return Response(status_code=204)


@router.post("/{name}/test", response_model=ChannelTest, summary="Send a test message (admin)")
async def test(name: str, session: Session, caller: Caller) -> ChannelTest:
    delivered, detail = await service.test_channel(session, caller, name)
    return ChannelTest(delivered=delivered, detail=detail)
