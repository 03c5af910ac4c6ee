"""/api/v1: includes every feature's router."""

from __future__ import annotations

from fastapi import APIRouter

from pilothouse.alerts.api import router as channels
from pilothouse.apply.api import router as apply
from pilothouse.artifacts.api import router as artifacts
from pilothouse.audit.api import router as audit
from pilothouse.autoscaling.api import router as autoscaling
from pilothouse.backups.api import router as backups
from pilothouse.certificates.api import router as certificates
from pilothouse.deployments.api import router as deployments
from pilothouse.deployments.api import service_actions
from pilothouse.environments.api import router as environments
from pilothouse.errors import ERROR_RESPONSES
from pilothouse.findings.api import router as findings
from pilothouse.healthchecks.api import router as health
from pilothouse.history.api import router as history
from pilothouse.hooks.api import router as hooks
from pilothouse.metrics.api import router as metrics
from pilothouse.nodes.api import router as nodes
from pilothouse.replicas.api import router as replicas
from pilothouse.services.api import router as services
from pilothouse.users.api import router as users
from pilothouse.variables.api import router as variables

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
for feature in (
    users,
    environments,
    services,
    service_actions,
    replicas,
    artifacts,
    deployments,
    history,
    audit,
    health,
    channels,
    backups,
    variables,
    metrics,
    findings,
    certificates,
    autoscaling,
    apply,
    hooks,
    nodes,
):
    router.include_router(feature)
