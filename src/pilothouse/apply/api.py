"""/api/v1/apply: plan and apply a pilothouse.yaml, export the live state as one."""

from __future__ import annotations

from fastapi import APIRouter, Request

from pilothouse.apply import service
from pilothouse.apply.schemas import ApplyRequest, ExportRead, PlanRead
from pilothouse.core.crypto import CryptoError, Keyring, load_keyring
from pilothouse.deps import Caller, Session

router = APIRouter(prefix="/apply", tags=["apply"])


def _keyring(request: Request) -> Keyring | None:
    """The keyring when one is configured: files without secret references need none."""
    settings = request.app.state.settings
    try:
        return load_keyring(settings.master_key, settings.master_key_path)
    except CryptoError:
        return None


def _read(planned: service.Planned, applied: bool) -> PlanRead:
    plan = planned.plan
    return PlanRead.model_validate(
        {
            "fingerprint": planned.fingerprint,
            "changes": service.plan_json(plan),
            "counts": plan.counts(),
            "unmanaged": [f"{kind} {key}" for kind, key in plan.unmanaged],
            "applied": applied and not plan.empty,
        }
    )


@router.post(
    "/plan",
    response_model=PlanRead,
    summary="Plan a pilothouse.yaml against the live state (changes nothing)",
    description="422 lists every problem of the file with its line and column; the plan lists "
    "creates, updates (field by field) and, with `prune`, deletes.",
)
async def plan(body: ApplyRequest, request: Request, session: Session, caller: Caller) -> PlanRead:
    planned = await service.plan_document(
        session, caller, _keyring(request), body.document, prune=body.prune
    )
    return _read(planned, applied=False)


@router.post(
    "",
    response_model=PlanRead,
    summary="Apply a pilothouse.yaml in one transaction (each change audited)",
    description="Carries the plan out through the same services as the other routes, so each "
    "change needs the role it needs there; any failure changes nothing. An unchanged file "
    "writes nothing. With `expect`, 409 when the plan is no longer that one.",
)
async def apply(body: ApplyRequest, request: Request, session: Session, caller: Caller) -> PlanRead:
    planned = await service.apply_document(
        session,
        caller,
        _keyring(request),
        body.document,
        prune=body.prune,
        expect=body.expect,
        dns_target=request.app.state.settings.dns_target,
    )
    return _read(planned, applied=True)


@router.get(
    "/export",
    response_model=ExportRead,
    summary="The live state as a pilothouse.yaml that applies back to no change",
)
async def export(request: Request, session: Session, caller: Caller) -> ExportRead:
    return ExportRead(document=await service.export_yaml(session, caller, _keyring(request)))
