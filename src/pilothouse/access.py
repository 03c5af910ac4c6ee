"""Who may do what, and which rows a principal can see.

Roles are ordered viewer < operator < admin. A non-admin sees the records they own and everything
inside environments they were granted; anything else answers 404, never 403, so its existence is
not revealed. Admins see everything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pilothouse.environments.models import EnvironmentGrant
from pilothouse.errors import Forbidden

ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}

#: What each role may do beyond reading (seed 002 policies, issue 2 roles).
ACTION_ROLE = {
    "read": "viewer",
    "deploy": "operator",
    "scale": "operator",
    "manage_services": "operator",
    "define_commands": "admin",  # what runs on the host: commands, scripts, hooks, cwd
    "register_artifacts": "operator",
    "write_logs": "operator",
    "manage_environments": "admin",
    "manage_users": "admin",
    "manage_tokens": "admin",
    "read_audit": "admin",
    "run_backups": "operator",
    "manage_backups": "admin",
    "manage_vars": "operator",
    "reveal_secrets": "admin",
}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    id: uuid.UUID
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


SYSTEM = Principal(id=uuid.UUID(int=0), name="system", role="admin")


def may(principal: Principal, action: str) -> bool:
    """True when the principal's role reaches the role the action needs."""
    return ROLE_RANK[principal.role] >= ROLE_RANK[ACTION_ROLE[action]]


def require(principal: Principal, action: str, *, what: str = "") -> None:
    """Raise Forbidden (403) naming the role needed for `action` (and `what` it touched)."""
    if not may(principal, action):
        needed = ACTION_ROLE[action]
        about = f" ({what})" if what else ""
        raise Forbidden(
            f"role {principal.role!r} may not {action.replace('_', ' ')}{about}; needs {needed!r}",
            detail={"action": action, "role": principal.role, "needs": needed},
        )


def granted_environment_ids(principal: Principal) -> sa.Select[Any]:
    """Subquery: ids of the environments granted to the principal."""
    return sa.select(EnvironmentGrant.environment_id).where(
        EnvironmentGrant.user_id == principal.id
    )


def visible(
    principal: Principal, owner_col: Any, environment_col: Any | None = None
) -> sa.ColumnElement[bool]:
    """WHERE clause: rows the principal owns or that sit in an environment granted to them."""
    if principal.is_admin:
        return sa.true()
    clauses = [owner_col == principal.id]
    if environment_col is not None:
        clauses.append(environment_col.in_(granted_environment_ids(principal)))
    return sa.or_(*clauses)
