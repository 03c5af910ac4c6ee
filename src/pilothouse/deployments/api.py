"""/api/v1/deployments: record, list, get, transition, logs; and the two service actions that
record a deployment, /api/v1/services/{ref}/scale and /api/v1/services/{ref}/rollback."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from pilothouse.core.inputs import IsoDateTime
from pilothouse.core.store import unreachable
from pilothouse.deployments import pins, service, withdata
from pilothouse.deployments.schemas import (
    Accepted,
    ConfigRead,
    DataRestoreRead,
    DeploymentCreate,
    DeploymentPage,
    DeploymentRead,
    DeploymentStatus,
    DeploymentTransition,
    LogBatch,
    LogLevel,
    LogLine,
    LogPage,
    LogRead,
    PinRead,
    ReleaseDiffRead,
    ReleaseRef,
    RollbackPreview,
    RollbackRead,
    RollbackRequest,
    ScaleRequest,
    ScaleResult,
    SettingChangeRead,
    VarChangeRead,
)
from pilothouse.deployments.transitions import TERMINAL
from pilothouse.deps import Caller, Keys, Session, get_db
from pilothouse.replicas.schemas import ReplicaRead

router = APIRouter(prefix="/deployments", tags=["deployments"])
#: Actions on a service that start a deployment (listed with the services in the API docs).
service_actions = APIRouter(prefix="/services", tags=["services"])


@router.post(
    "",
    response_model=DeploymentRead,
    status_code=201,
    summary=(
        "Record a deployment (operator; a deployer: deploy or rollback only); it starts as pending"
    ),
)
async def create(body: DeploymentCreate, session: Session, caller: Caller) -> DeploymentRead:
    deployment = await service.create_deployment(session, caller, **body.model_dump())
    return DeploymentRead.model_validate(deployment)


@router.get("", response_model=DeploymentPage, summary="List, newest first, with cursor pages")
async def list_(
    session: Session,
    caller: Caller,
    environment: str | None = Query(default=None, description="Environment name or id."),
    service_ref: str | None = Query(default=None, alias="service", description="Service."),
    status: list[DeploymentStatus] = Query(default=[], description="One or more statuses."),
    since: IsoDateTime | None = Query(default=None, description="Created at or after (ISO 8601)."),
    until: IsoDateTime | None = Query(default=None, description="Created before (ISO 8601)."),
    limit: int = Query(default=50, ge=1, le=500, description="Page size."),
    cursor: str | None = Query(default=None, description="next_cursor of the previous page."),
    archived: bool = Query(
        default=False,
        description="List the archived deployments (older than 90 days) instead of the others.",
    ),
) -> DeploymentPage:
    filters = service.DeploymentFilter(
        environment=environment,
        service=service_ref,
        statuses=tuple(status),
        since=since,
        until=until,
        archived=archived,
    )
    rows, next_cursor = await service.list_deployments(
        session, caller, filters, limit=limit, cursor=cursor
    )
    return DeploymentPage(
        items=[DeploymentRead.model_validate(d) for d in rows], next_cursor=next_cursor
    )


@router.get(
    "/{deployment_id}",
    response_model=DeploymentRead,
    summary="Get one by id or unique id prefix (4+ hex digits; 409 lists an ambiguous one's "
    "candidates)",
)
async def get(deployment_id: str, session: Session, caller: Caller) -> DeploymentRead:
    return DeploymentRead.model_validate(
        await service.get_deployment(session, caller, deployment_id)
    )


def _config(view: pins.ConfigView) -> ConfigRead:
    return ConfigRead(
        deployment_id=view.deployment.id,
        version=view.deployment.version,
        pinned=view.pinned,
        pinned_at=view.pinned_at,
        copied_from=view.copied_from,
        variables=[PinRead.model_validate(row) for row in pins.labels(view.pins)],
        driver_settings=view.driver_settings,
    )


def _ref(view: pins.ConfigView) -> ReleaseRef:
    dep = view.deployment
    return ReleaseRef(
        deployment_id=dep.id,
        service_id=dep.service_id,
        version=dep.version,
        artifact_id=dep.artifact_id,
        commit_sha=dep.commit_sha,
        event_type=dep.event_type,
        status=dep.status,
        created_at=dep.created_at,
        pinned=view.pinned,
    )


@router.get(
    "/{deployment_id}/config",
    response_model=ConfigRead,
    summary="The config version a release delivered: variable names and versions, never values",
    description="Accepts a unique id prefix. A deployment recorded before pinning, or not "
    "started yet, has `pinned: false` and no variables.",
)
async def config(deployment_id: str, session: Session, caller: Caller) -> ConfigRead:
    return _config(await pins.config_of(session, caller, deployment_id))


@router.get(
    "/{deployment_id}/diff/{other_id}",
    response_model=ReleaseDiffRead,
    summary="What changed between two releases: artifact, variables by name and version, "
    "driver settings (never values)",
    description="Both ids accept a unique id prefix; the first is the release compared from.",
)
async def diff(
    deployment_id: str, other_id: str, session: Session, caller: Caller
) -> ReleaseDiffRead:
    result = await pins.diff_releases(session, caller, deployment_id, other_id)
    a, b = result.before.deployment, result.after.deployment
    return ReleaseDiffRead(
        from_release=_ref(result.before),
        to_release=_ref(result.after),
        artifact_changed=(a.artifact_id, a.version) != (b.artifact_id, b.version),
        variables=[
            VarChangeRead(
                key=c.key,
                change=c.change,
                source_from=c.source_from,
                source_to=c.source_to,
                version_from=c.version_from,
                version_to=c.version_to,
                secret=c.is_secret,
            )
            for c in result.variables
        ],
        driver_settings=[
            SettingChangeRead(key=c.key, change=c.change, before=c.before, after=c.after)
            for c in result.settings
        ],
        notes=result.notes,
    )


@router.post(
    "/{deployment_id}/transition",
    response_model=DeploymentRead,
    summary="Change status (operator); 409 names from and to when the move is not allowed",
)
async def transition(
    deployment_id: uuid.UUID,
    body: DeploymentTransition,
    session: Session,
    caller: Caller,
    keys: Keys,
) -> DeploymentRead:
    outcome = body.model_dump(exclude={"to", "reason"}, exclude_none=True)
    deployment = await service.transition_deployment(
        session, caller, deployment_id, body.to, keyring=keys, reason=body.reason, **outcome
    )
    return DeploymentRead.model_validate(deployment)


@router.post(
    "/{deployment_id}/logs", response_model=Accepted, status_code=201, summary="Append one line"
)
async def append_log(
    deployment_id: uuid.UUID, body: LogLine, session: Session, caller: Caller, keys: Keys
) -> Accepted:
    count = await service.append_logs(
        session, caller, deployment_id, [body.model_dump()], keyring=keys
    )
    return Accepted(accepted=count)


@router.post(
    "/{deployment_id}/logs/batch",
    response_model=Accepted,
    status_code=201,
    summary="Append up to 10,000 lines in order, in one transaction",
)
async def append_logs(
    deployment_id: uuid.UUID, body: LogBatch, session: Session, caller: Caller, keys: Keys
) -> Accepted:
    lines = [line.model_dump() for line in body.lines]
    return Accepted(
        accepted=await service.append_logs(session, caller, deployment_id, lines, keyring=keys)
    )


@router.get("/{deployment_id}/logs", response_model=LogPage, summary="Read lines after a seq")
async def read_logs(
    deployment_id: str,
    session: Session,
    caller: Caller,
    after: int = Query(
        default=0, ge=0, le=2**63 - 1, description="Return lines with seq greater than this."
    ),
    limit: int = Query(default=1000, ge=1, le=10000, description="Most lines to return."),
    level: LogLevel | None = Query(default=None, description="Only this level."),
) -> LogPage:
    resolved = (await service.get_deployment(session, caller, deployment_id)).id
    rows = await service.read_logs(session, caller, resolved, after=after, limit=limit, level=level)
    items = [LogRead.model_validate(r) for r in rows]
    return LogPage(items=items, last_seq=items[-1].seq if items else None)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


@router.get(
    "/{deployment_id}/events",
    summary="Live progress as Server-Sent Events: log, replica, status, end",
    response_class=StreamingResponse,
)
async def events(
    deployment_id: str,
    request: Request,
    caller: Caller,
    after: int = Query(default=0, ge=0, le=2**63 - 1, description="Start after this log seq."),
) -> StreamingResponse:
    db = get_db(request)
    async with db.session(write=False) as session:
        # 404 before streaming; a prefix is resolved once to the full id.
        resolved = (await service.get_deployment(session, caller, deployment_id)).id

    async def stream() -> AsyncIterator[str]:
        last_seq, last_status = after, None
        seen: dict[str, tuple[Any, ...]] = {}
        while not await request.is_disconnected():
            try:
                async with db.session(write=False) as session:
                    state = await service.progress(session, caller, resolved, after=last_seq)
            except Exception as exc:
                # The store is away: the stream waits for it (an SSE comment says why, each second).
                if (reason := unreachable(exc)) is None:
                    raise
                yield f": the store is unreachable ({reason})\n\n"
                await asyncio.sleep(1.0)
                continue
            for line in state.logs:
                last_seq = line.seq
                yield _sse("log", LogRead.model_validate(line).model_dump(mode="json"))
            for replica in state.replicas:
                key = (replica.status, replica.health, replica.pid, replica.restart_count)
                if seen.get(str(replica.id)) != key:
                    seen[str(replica.id)] = key
                    yield _sse(
                        "replica", ReplicaRead.model_validate(replica).model_dump(mode="json")
                    )
            dep = state.deployment
            if dep.status != last_status:
                last_status = dep.status
                yield _sse("status", {"status": dep.status, "error_message": dep.error_message})
            if dep.status in TERMINAL and not state.logs:
                yield _sse(
                    "end",
                    {
                        "status": dep.status,
                        "error_message": dep.error_message,
                        "rollback_deployment": str(state.rollback.id) if state.rollback else None,
                        "instances_deployed": dep.instances_deployed,
                        "event_type": dep.event_type,
                    },
                )
                return
            await asyncio.sleep(0.25)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@service_actions.post(
    "/{ref}/scale",
    response_model=ScaleResult,
    summary="Set target replicas (operator); a live service gets a scale deployment",
)
async def scale(ref: str, body: ScaleRequest, session: Session, caller: Caller) -> ScaleResult:
    svc, deployment = await service.scale(session, caller, ref, body.target_replicas)
    result = ScaleResult.model_validate(svc, from_attributes=True)
    result.deployment_id = deployment.id if deployment else None
    return result


@service_actions.get(
    "/{ref}/rollback",
    response_model=RollbackPreview,
    summary="What a rollback would do: the release it returns to, and the data it can restore",
    description="Records nothing. `data_restore` says whether `with_data` would restore the "
    "pre-deployment backup of the release being left (and which), or why not.",
)
async def rollback_preview(
    ref: str,
    session: Session,
    caller: Caller,
    to: str | None = Query(default=None, description="Version to roll back to."),
    environment: str | None = Query(
        default=None, description="Environment name or id, when the name is ambiguous."
    ),
) -> RollbackPreview:
    plan = await service.plan_rollback(session, caller, ref, environment=environment, to_version=to)
    found = await withdata.data_restore(session, plan.service.id, plan.live, plan.target)
    return RollbackPreview(
        service=plan.service.name,
        from_version=plan.live.version,
        to_version=plan.target.version,
        data_restore=DataRestoreRead.model_validate(found),
    )


@service_actions.post(
    "/{ref}/rollback",
    response_model=RollbackRead,
    status_code=201,
    summary=(
        "Roll back by hand (operator or deployer): to `to`, or the release live before the "
        "current one"
    ),
    description="The default target is the last release that went live (a deployment of it "
    "succeeded) before the live one and was not rolled back since; a release that never went "
    "live is never a target. 409 when there is none, or when `to` never went live. "
    "`with_data` also restores the pre-deployment backup the release being left took before "
    "its migration (409 when there is none that fits); without it, `data_restore` says whether "
    "one was available.",
)
async def rollback(
    ref: str,
    body: RollbackRequest,
    session: Session,
    caller: Caller,
    environment: str | None = Query(
        default=None, description="Environment name or id, when the name is ambiguous."
    ),
) -> RollbackRead:
    deployment = await service.create_rollback(
        session, caller, ref, environment=environment, to_version=body.to, with_data=body.with_data
    )
    found = await withdata.data_restore_of(session, deployment)
    result = RollbackRead.model_validate(
        {
            **DeploymentRead.model_validate(deployment).model_dump(),
            "data_restore": DataRestoreRead.model_validate(found),
        }
    )
    return result
