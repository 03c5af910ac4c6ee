"""/api/v1/hooks: deploy webhooks (admin manages them; senders authenticate by signature)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from pilothouse.deps import Caller, Keys, Session, get_db
from pilothouse.hooks import service
from pilothouse.hooks.schemas import HookCreate, HookRead, HookResult

router = APIRouter(prefix="/hooks", tags=["hooks"])
#: Largest delivery accepted (GitHub's push payloads are capped at 25 MB; pushes are far smaller).
MAX_BODY = 1024 * 1024


@router.post("", response_model=HookRead, status_code=201, summary="Create a deploy hook (admin)")
async def create(body: HookCreate, session: Session, caller: Caller, keys: Keys) -> HookRead:
    return HookRead.model_validate(await service.create_hook(session, caller, keys, body))


@router.get("", response_model=list[HookRead], summary="List deploy hooks (admin)")
async def list_(session: Session, caller: Caller) -> list[HookRead]:
    return [HookRead.model_validate(h) for h in await service.list_hooks(session, caller)]


@router.delete("/{name}", status_code=204, summary="Delete a deploy hook (admin)")
async def delete(name: str, session: Session, caller: Caller) -> Response:
    await service.delete_hook(session, caller, name)
    return Response(status_code=204)


@router.post(
    "/{name}",
    response_model=HookResult,
    status_code=202,
    summary="Receive a signed deploy webhook (GitHub push/workflow_run, or generic signed JSON)",
    description="No token: the HMAC signature authenticates (X-Hub-Signature-256 with "
    "X-GitHub-Event and X-GitHub-Delivery, or X-Pilothouse-Signature over "
    "`<timestamp>.<delivery>.<body>` with X-Pilothouse-Timestamp and X-Pilothouse-Delivery; "
    "docs/ci.md). A matching branch or tag registers the commit as an artifact and deploys it "
    "(202 `deployed`); anything else is 202 `ignored: ...`. 401 bad signature or stale "
    "timestamp, 403 the hook's creator is no longer an active admin, 409 a replay (a GitHub "
    "body or a generic delivery id seen before), 404 no such hook. Every call to an existing "
    "hook is audited.",
)
async def receive(name: str, request: Request, keys: Keys) -> JSONResponse:
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"outcome": "payload too large"}, status_code=413)
    headers = {k.lower(): v for k, v in request.headers.items()}
    answer = await service.receive(get_db(request), keys, name, headers, body)
    content = {
        "outcome": answer.outcome,
        "deployment_id": answer.deployment_id,
        "version": answer.version,
    }
    if answer.status >= 400:
        code = {401: "unauthorized", 404: "not_found", 409: "conflict"}.get(
            answer.status, "validation_failed" if answer.status == 422 else "error"
        )
        content = {"error": code, "message": answer.outcome, "detail": None}
    return JSONResponse(content, status_code=answer.status)
