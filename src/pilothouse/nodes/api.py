"""/api/v1/nodes: nodes with their capacity, allocation and free resources (read-only; each
worker registers its host)."""

from __future__ import annotations

from fastapi import APIRouter

from pilothouse.deps import Caller, Session
from pilothouse.nodes import service
from pilothouse.nodes.schemas import NodeDetail, NodeRead, NodeReplica

router = APIRouter(tags=["nodes"])


@router.get("/nodes", response_model=list[NodeRead], summary="Nodes: allocation vs capacity")
async def list_(session: Session, caller: Caller) -> list[NodeRead]:
    return [NodeRead.of(v) for v in await service.list_nodes(session, caller)]


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
