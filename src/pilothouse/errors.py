"""Errors that carry an HTTP status; one handler renders them, the CLI prints them."""

from __future__ import annotations

from typing import Any


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
