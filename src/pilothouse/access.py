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

ROLE_RANK = {"ingest": -1, "viewer": 0, "deployer": 0, "operator": 1, "admin": 2}
#: The role of a token scoped to metrics ingestion: it may push samples into its one
#: environment and do nothing else (not even read).
INGEST = "ingest"
#: The role of CI: in the environments granted to it, it may read, register artifacts, deploy
#: and roll back, and nothing else (not scale, stop, change settings or variables).
DEPLOYER = "deployer"
DEPLOYER_ACTIONS = frozenset({"read", "register_artifacts", "deploy"})
#: The deployment event types a deployer may record (restart, config_update, scale: operator).
DEPLOYER_EVENT_TYPES = frozenset({"deploy", "rollback"})
#: Days a deployer's token lives when no lifetime is asked for (at most DEPLOYER_TOKEN_MAX_DAYS).
DEPLOYER_TOKEN_DAYS = 90
DEPLOYER_TOKEN_MAX_DAYS = 365

#: What each role may do beyond reading (seed 002 policies, issue 2 roles).
ACTION_ROLE = {
    "read": "viewer",
    "deploy": "operator",  # and a deployer: deploy, roll back
    "scale": "operator",
    "manage_services": "operator",
    "define_commands": "admin",  # what runs on the host: commands, scripts, hooks, cwd
    "register_artifacts": "operator",  # and a deployer
    "manage_artifacts": "operator",  # change or delete a registered artifact
    "stop_start": "operator",  # stop a service, start it again
    "transition_deployments": "operator",  # set a deployment's status by hand
    "write_logs": "operator",
    "manage_environments": "admin",
    "manage_nodes": "admin",  # add or remove hosts reached over SSH
    "manage_users": "admin",
    "manage_tokens": "admin",
    "read_audit": "admin",
    "run_backups": "operator",
    "manage_backups": "admin",
    "manage_vars": "operator",
    "reveal_secrets": "admin",
    "ingest_metrics": "operator",  # and an ingest token, for its own environment
    "manage_metrics": "operator",
    "import_scans": "operator",  # import a report, run or schedule a scan
    "triage_findings": "operator",  # accept a risk, mark a false positive, reopen
    "override_gate": "admin",  # let one deployment past the security gate
}


#: The id every system actor carries; no user row has it.
SYSTEM_ID = uuid.UUID(int=0)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    id: uuid.UUID
    name: str
    role: str
    #: Set for an ingest token: the one environment it may push metrics into.
    environment_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_system(self) -> bool:
        """True for pilothouse itself (see system_actor), never for a user."""
        return self.id == SYSTEM_ID

    @property
    def user_id(self) -> uuid.UUID | None:
        """The user row behind this principal, for owner and `changed_by` columns; None for
        pilothouse itself."""
        return None if self.is_system else self.id


def system_actor(name: str = "system") -> Principal:
    """pilothouse acting on its own (the release engine, the health monitor, backups, a command
    run on the host): admin rights, no user row. `name` is what history and audit record."""
    return Principal(id=SYSTEM_ID, name=name, role="admin")


SYSTEM = system_actor()


def may(principal: Principal, action: str) -> bool:
    """True when the principal's role reaches the role the action needs (an ingest token may
    ingest metrics and nothing else)."""
    if principal.role == INGEST:
        return action == "ingest_metrics"
    if principal.role == DEPLOYER:
        return action in DEPLOYER_ACTIONS
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
