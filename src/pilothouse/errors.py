"""Errors that carry an HTTP status; one handler renders them, the CLI prints them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PilothouseError(Exception):
    """Base error: a message for humans, an HTTP status, optional structured detail."""

    status = 400
    code = "error"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NotFound(PilothouseError):
    status = 404
    code = "not_found"


class Conflict(PilothouseError):
    status = 409
    code = "conflict"


class AlreadyLive(Conflict):
    """Deploying what is already live: nothing is done (the CLI treats this as success)."""

    code = "already_live"


class InvalidTransition(Conflict):
    code = "invalid_transition"

    def __init__(self, entity: str, from_status: str, to_status: str) -> None:
        super().__init__(
            f"{entity} cannot go from {from_status!r} to {to_status!r}",
            detail={"entity": entity, "from": from_status, "to": to_status},
        )
        self.from_status = from_status
        self.to_status = to_status


class ValidationFailed(PilothouseError):
    status = 422
    code = "validation_failed"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}", detail=[{"field": field, "rule": rule}])
        self.field = field
        self.rule = rule


class Unauthorized(PilothouseError):
    status = 401
    code = "unauthorized"


class Forbidden(PilothouseError):
    status = 403
    code = "forbidden"


class PayloadTooLarge(PilothouseError):
    status = 413
    code = "payload_too_large"


class FieldProblem(BaseModel):
    """One invalid input: where, and what is allowed."""

    field: str = Field(description="Dotted path of the field (`resources.cpu_cores`), or `body`.")
    rule: str = Field(description="What is allowed, e.g. `must be between 0.5 and 32`.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(
        description=(
            "Machine-readable code: unauthorized, forbidden, not_found, conflict, "
            "invalid_transition, already_live, payload_too_large, validation_failed, "
            "key_unavailable, ..."
        )
    )
    message: str = Field(description="What went wrong, for humans.")
    detail: list[FieldProblem] | dict[str, Any] | None = Field(
        description=(
            "422: the invalid fields; 403: action, role and role needed; 409 transitions: "
            "entity, from, to; otherwise null or context."
        )
    )


def _response(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: The error responses every API route declares in the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _response("No token, or an unknown, revoked or expired one."),
    403: _response("The caller's role may not do this."),
    404: _response("Missing, deleted, or not visible to the caller (indistinguishable)."),
    409: _response("Conflicts with the current state: duplicate, refused transition, limit."),
    413: _response("The request body is larger than the server accepts."),
    422: _response("Invalid input: `detail` names each field and its rule."),
    503: {
        **_response(
            "A dependency is unavailable: `store_unavailable` (the database; detail has `reason` "
            "and `since`, and `Retry-After` says when to retry) or `key_unavailable` (the master "
            "key)."
        ),
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again (store outages).",
                "schema": {"type": "integer"},
            }
        },
    },
}
