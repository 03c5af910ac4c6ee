"""/api/v1/environments/{env}/vars and /requirements: encrypted, versioned variables."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from pilothouse.deps import Caller, Keys, Session, get_db
from pilothouse.variables import service
from pilothouse.variables.rules import KEY_PATTERN
from pilothouse.variables.schemas import (
    CheckResult,
    ImportRequest,
    ImportResult,
    RequirementRead,
    RequirementSet,
    RevertRequest,
    VarChange,
    VarRead,
    VarSet,
    VersionRead,
)

router = APIRouter(tags=["variables"])
Key = Annotated[
    str,
    Path(
        description="Variable name: a letter or _, then letters, digits or _ (at most 255).",
        json_schema_extra={"pattern": KEY_PATTERN.pattern},
    ),
]


@router.get(
    "/environments/{env}/vars",
    response_model=list[VarRead],
    summary="Variables (secrets masked; ?reveal=true for admins, audited)",
)
async def list_vars(
    env: str,
    request: Request,
    session: Session,
    caller: Caller,
    keys: Keys,
    service_ref: str | None = Query(default=None, alias="service", description="A service."),
    reveal: bool = Query(default=False, description="Show secret values (admin; audited)."),
) -> list[VarRead]:
    if reveal:
        # A GET runs read-only; a reveal must leave its audit row, committed before the values
        # are sent.
        async with get_db(request).session(write=True) as audited:
            views = await service.list_vars(
                audited, caller, keys, env, service=service_ref, reveal=True
            )
    else:
        views = await service.list_vars(session, caller, keys, env, service=service_ref)
    return [VarRead(**asdict(v)) for v in views]


@router.put(
    "/environments/{env}/vars/{key}",
    response_model=VarChange,
    summary="Set a variable (operator); a change is a new version",
)
async def set_var(
    env: str, key: Key, body: VarSet, session: Session, caller: Caller, keys: Keys
) -> VarChange:
    var, changed = await service.set_var(
        session,
        caller,
        keys,
        env,
        key,
        body.value.get_secret_value(),
        is_secret=body.is_secret,
        plain=body.plain,
        service=body.service,
    )
    return VarChange(key=var.key, version=var.version, changed=changed)


@router.delete("/environments/{env}/vars/{key}", status_code=204, summary="Unset a variable")
async def unset_var(
    env: str,
    key: Key,
    session: Session,
    caller: Caller,
    service_ref: str | None = Query(default=None, alias="service", description="A service."),
) -> Response:
    await service.unset_var(session, caller, env, key, service=service_ref)
    return Response(status_code=204)


@router.get(
    "/environments/{env}/vars/{key}/history",
    response_model=list[VersionRead],
    summary="Versions of a variable, oldest first (no values)",
)
async def history(
    env: str,
    key: Key,
    session: Session,
    caller: Caller,
    service_ref: str | None = Query(default=None, alias="service", description="A service."),
) -> list[VersionRead]:
    rows = await service.history(session, caller, env, key, service=service_ref)
    return [VersionRead.model_validate(r) for r in rows]


@router.post(
    "/environments/{env}/vars/{key}/revert",
    response_model=VarChange,
    summary="Restore the value of an earlier version (a new version)",
)
async def revert(
    env: str, key: Key, body: RevertRequest, session: Session, caller: Caller, keys: Keys
) -> VarChange:
    var = await service.revert(session, caller, keys, env, key, body.to, service=body.service)
    return VarChange(key=var.key, version=var.version, changed=True)


@router.post(
    "/environments/{env}/vars-import",
    response_model=ImportResult,
    summary="Set many variables in one transaction (dry_run: only the plan)",
)
async def import_vars(
    env: str, body: ImportRequest, session: Session, caller: Caller, keys: Keys
) -> ImportResult:
    plan = await service.import_vars(
        session,
        caller,
        keys,
        env,
        {k: v.get_secret_value() for k, v in body.values.items()},
        secret_keys=set(body.secret_keys),
        plain_keys=set(body.plain_keys),
        service=body.service,
        dry_run=body.dry_run,
    )
    return ImportResult(**asdict(plan), applied=not body.dry_run)


@router.get(
    "/environments/{env}/vars-check",
    response_model=CheckResult,
    summary="The problems a deployment would be refused for (keys and rules, never values)",
)
async def check(
    env: str,
    session: Session,
    caller: Caller,
    keys: Keys,
    service_ref: str | None = Query(default=None, alias="service", description="A service."),
) -> CheckResult:
    problems = await service.check(session, caller, keys, env, service_ref)
    return CheckResult(ok=not problems, problems=problems)


@router.get(
    "/vars-diff",
    response_model=dict[str, list[str]],
    summary=(
        "Keys missing on either side and keys whose values differ (never values); secrets are "
        "compared only for admins (else listed in secrets_not_compared); audited"
    ),
)
async def diff(
    request: Request,
    caller: Caller,
    keys: Keys,
    left: str = Query(description="Environment."),
    right: str = Query(description="Environment."),
) -> dict[str, list[str]]:
    # A GET runs read-only; a diff leaves its audit row, committed before the answer is sent.
    async with get_db(request).session(write=True) as audited:
        return await service.diff(audited, caller, keys, left, right)


@router.get(
    "/environments/{env}/requirements",
    response_model=list[RequirementRead],
    summary="Variables the environment's deployments need",
)
async def list_requirements(env: str, session: Session, caller: Caller) -> list[RequirementRead]:
    rows = await service.list_requirements(session, caller, env)
    return [RequirementRead.model_validate(r) for r in rows]


@router.put(
    "/environments/{env}/requirements/{key}",
    response_model=RequirementRead,
    summary="Require a variable, with an optional format rule (admin)",
)
async def set_requirement(
    env: str, key: Key, body: RequirementSet, session: Session, caller: Caller
) -> RequirementRead:
    row = await service.set_requirement(
        session, caller, env, key, required=body.required, rule=body.rule, args=body.args
    )
    return RequirementRead.model_validate(row)


@router.delete(
    "/environments/{env}/requirements/{key}", status_code=204, summary="Drop a requirement"
)
async def delete_requirement(env: str, key: Key, session: Session, caller: Caller) -> Response:
    await service.delete_requirement(session, caller, env, key)
    return Response(status_code=204)
