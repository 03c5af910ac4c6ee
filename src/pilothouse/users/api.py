"""/api/v1/users and /api/v1/tokens."""

from __future__ import annotations

from fastapi import APIRouter, Query

from pilothouse.deps import Caller, Session
from pilothouse.users import service
from pilothouse.users.schemas import (
    TokenCreate,
    TokenIssued,
    TokenRead,
    UserCreate,
    UserCreated,
    UserRead,
)

router = APIRouter(tags=["users"])


@router.get("/users/me", response_model=UserRead, summary="The user behind the token")
async def me(session: Session, caller: Caller) -> UserRead:
    return UserRead.model_validate(await service.get_user(session, caller.id))


@router.post("/users", response_model=UserCreated, status_code=201, summary="Create a user (admin)")
async def create_user(body: UserCreate, session: Session, caller: Caller) -> UserCreated:
    user = await service.create_user(
        session, caller, name=body.name, role=body.role, email=body.email
    )
    created = UserCreated.model_validate(user, from_attributes=True)
    if body.with_token:
        row, token = await service.create_token(
            session, caller, user_ref=str(user.id), name="initial"
        )
        created.token = TokenIssued(**TokenRead.model_validate(row).model_dump(), token=token)
    return created


@router.get("/users", response_model=list[UserRead], summary="List users (admin)")
async def list_users(session: Session, caller: Caller) -> list[UserRead]:
    return [UserRead.model_validate(u) for u in await service.list_users(session, caller)]


@router.post(
    "/tokens",
    response_model=TokenIssued,
    status_code=201,
    summary="Issue an API token (admin); the token is in this response only",
)
async def create_token(body: TokenCreate, session: Session, caller: Caller) -> TokenIssued:
    row, token = await service.create_token(
        session,
        caller,
        user_ref=body.user,
        name=body.name,
        expires_in_days=body.expires_in_days,
        ingest_environment=body.ingest_environment,
    )
    return TokenIssued(**TokenRead.model_validate(row).model_dump(), token=token)


@router.get("/tokens", response_model=list[TokenRead], summary="List tokens (admin), never values")
async def list_tokens(
    session: Session,
    caller: Caller,
    user: str | None = Query(default=None, description="Only this user's tokens (name or id)."),
) -> list[TokenRead]:
    rows = await service.list_tokens(session, caller, user_ref=user)
    return [TokenRead.model_validate(r) for r in rows]


@router.delete(
    "/tokens/{token_id}",
    response_model=TokenRead,
    summary="Revoke a token (admin) by id or unique id prefix; 409 lists an ambiguous "
    "prefix's candidates",
)
async def revoke_token(token_id: str, session: Session, caller: Caller) -> TokenRead:
    return TokenRead.model_validate(await service.revoke_token(session, caller, token_id))
