"""Stopping and starting a service (operator): each is recorded as a deployment of the live
release (event_type `stop` / `start`) that the release engine carries out under its lease, so
it can never race a deploy (the store allows one active deployment per service).

- stop: the service goes to `stopped` at once (the monitor stops probing it, its open incident
  ends, stopped time is not downtime); the engine then takes its replicas out of the router,
  drains them and stops them (SIGTERM, SIGKILL after the grace period). The crash supervisor
  leaves replicas of a stopped service alone and finishes a stop that a dead worker left half
  done.
- start: the engine takes the service to `scheduled` (stopped time ends there) and starts
  `target_replicas` replicas of the live release (no build, no migration, no pre-deployment
  backup), health-gated, and routes them; the service is `running` again. A start the engine
  refuses before anything runs (e.g. its router port taken meanwhile) leaves it `stopped`; one
  whose replicas do not become ready leaves it `failed`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require
from pilothouse.artifacts import service as artifacts
from pilothouse.audit import service as audit
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import Deployment
from pilothouse.drivers import registry
from pilothouse.environments.models import Environment
from pilothouse.errors import Conflict
from pilothouse.healthchecks import service as health
from pilothouse.services import service as services
from pilothouse.services.models import Service
from pilothouse.services.stopstart import Refusal, start_refusal, stop_refusal


def _conflict(refusal: Refusal) -> Conflict:
    return Conflict(refusal.message, detail=refusal.detail)


def _why(verb: str, actor: Principal, reason: str | None, deployment: Deployment) -> str:
    said = f": {reason}" if reason else ""
    return f"{verb} by {actor.name}{said} (deployment {deployment.id})"


async def _record(
    session: AsyncSession,
    actor: Principal,
    svc: Service,
    version: str,
    event: str,
    reason: str | None,
) -> Deployment:
    """The stop or start deployment of the live release, and its audit entry."""
    deployment = await deployments.create_deployment(
        session,
        actor,
        service=str(svc.id),
        version=version,
        event_type=event,
        triggered_by="manual",
    )
    audit.record(
        session,
        actor,
        event,
        "service",
        svc.id,
        {"deployment": str(deployment.id), "version": version, "reason": reason},
    )
    return deployment


async def stop_service(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    *,
    environment: str | None = None,
    reason: str | None = None,
) -> tuple[Service, Deployment]:
    """Stop a service (operator): record the stop deployment, mark the service stopped."""
    svc = await services.get_service(session, actor, ref, environment=environment)
    require(actor, "stop_start")
    env = await session.get(Environment, svc.environment_id)
    assert env is not None
    live = await artifacts.get_deployed(session, svc.id)
    can_stop = env.driver in registry.supervised() or bool(
        (svc.driver_config or {}).get("stop_command")
    )
    refusal = stop_refusal(svc.name, svc.status, live.version if live else None, can_stop=can_stop)
    if refusal is not None:
        raise _conflict(refusal)
    assert live is not None
    deployment = await _record(session, actor, svc, live.version, "stop", reason)
    await services.transition(
        session, svc, "stopped", actor=actor, reason=_why("stopped", actor, reason, deployment)
    )
    await health.service_stopped(session, svc.id, reason=f"service stopped by {actor.name}")
    return svc, deployment


async def start_service(
    session: AsyncSession,
    actor: Principal,
    ref: str,
    *,
    environment: str | None = None,
    reason: str | None = None,
) -> tuple[Service, Deployment]:
    """Start a stopped service (operator) at its live release: record the start deployment."""
    svc = await services.get_service(session, actor, ref, environment=environment)
    require(actor, "stop_start")
    live = await artifacts.get_deployed(session, svc.id)
    refusal = start_refusal(svc.name, svc.status, live.version if live else None)
    if refusal is not None:
        raise _conflict(refusal)
    assert live is not None
    deployment = await _record(session, actor, svc, live.version, "start", reason)
    return svc, deployment
