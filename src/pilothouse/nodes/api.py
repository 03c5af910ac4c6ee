"""/api/v1/nodes: nodes with their capacity, allocation and free resources; hosts reached over
SSH are added and removed here (admin); each worker registers its own host."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from pilothouse.deps import Caller, Keys, Session
from pilothouse.nodes import service
from pilothouse.nodes.schemas import NodeCreate, NodeDetail, NodeRead, NodeReplica

router = APIRouter(tags=["nodes"])


@router.get("/nodes", response_model=list[NodeRead], summary="Nodes: allocation vs capacity")
async def list_(session: Session, caller: Caller) -> list[NodeRead]:
    return [NodeRead.of(v) for v in await service.list_nodes(session, caller)]


@router.post(
    "/nodes",
    response_model=NodeRead,
    status_code=201,
    summary="Add a host reached over SSH (admin)",
    description="Connects, checks the host key against `trust` (422 on first contact, showing "
    "the fingerprint to pass, or on a mismatch), logs in with the client key (422 when "
    "refused), detects capacity and python3/podman, and stores the node with the key sealed. "
    "503 when the host does not answer.",
)
async def add(body: NodeCreate, session: Session, caller: Caller, keys: Keys) -> NodeRead:
    spec = service.HostSpec(**body.model_dump())
    node = await service.add_host(session, caller, keys, spec)
    return NodeRead.of(await service.get_node(session, caller, str(node.id)))


@router.delete(
    "/nodes/{ref}",
    status_code=204,
    summary="Remove a host reached over SSH (admin; 409 while live replicas run on it or "
    "replicas lost with it are not fenced yet)",
)
async def remove(
    ref: str,
    session: Session,
    caller: Caller,
    force: bool = Query(
        False,
        description="Remove it although replicas lost with it were not stopped there (fenced)"
        " yet: the host is gone for good, or they were stopped on it by hand",
    ),
) -> Response:
    await service.remove_node(session, caller, ref, force=force)
    return Response(status_code=204)


@router.get("/nodes/{ref}", response_model=NodeDetail, summary="One node and its replicas")
async def show(ref: str, session: Session, caller: Caller) -> NodeDetail:
    view = await service.get_node(session, caller, ref)
    rows = await service.node_replicas(session, caller, view)
    return NodeDetail(
        **NodeRead.of(view).model_dump(),
        replica_list=[
            NodeReplica(
                id=r.id,
                service=name,
                status=r.status,
                version=r.version,
                container_id=r.container_id,
            )
            for r, name in rows
        ],
    )
