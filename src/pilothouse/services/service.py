"""Services: create, read, update, scale, soft delete, and the service transition()."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require, visible
from pilothouse.audit import service as audit
from pilothouse.core import ports
from pilothouse.core.clock import utcnow
from pilothouse.core.statemachine import check_transition
from pilothouse.deployments.active import check_no_active
from pilothouse.drivers import registry
from pilothouse.environments import service as environments
from pilothouse.environments.models import Environment
from pilothouse.errors import Conflict, NotFound
from pilothouse.history import service as history
from pilothouse.services.hostfields import host_changes
from pilothouse.services.models import Service
from pilothouse.services.transitions import TABLE

RESOURCE_FIELDS = ("cpu_cores", "memory_mb", "gpu_units", "storage_gb")


def _live_visible(actor: Principal) -> sa.ColumnElement[bool]:
    return sa.and_(
        Service.deleted_at.is_(None), visible(actor, Service.owner_id, Service.environment_id)
    )


async def get_service(
    session: AsyncSession, actor: Principal, ref: str, *, environment: str | None = None
) -> Service:
    """A live service the actor can see, by id, or by name (plus environment when ambiguous)."""
    query = sa.select(Service).where(_live_visible(actor))
    try:
        query = query.where(Service.id == uuid.UUID(ref))
    except ValueError:
        query = query.where(Service.name == ref)
        if environment:
            env = await environments.get_environment(session, actor, environment)
            query = query.where(Service.environment_id == env.id)
    found = (await session.scalars(query.limit(2))).all()
    if not found:
        where = f" in environment {environment!r}" if environment else ""
        raise NotFound(f"service {ref!r} not found{where}")
    if len(found) > 1:
        raise Conflict(f"service name {ref!r} exists in several environments; pass --env")
    return found[0]


async def list_services(
    session: AsyncSession, actor: Principal, *, environment: str | None = None
) -> Sequence[Service]:
    query = sa.select(Service).where(_live_visible(actor)).order_by(Service.name)
    if environment:
        env = await environments.get_environment(session, actor, environment)
        query = query.where(Service.environment_id == env.id)
    return (await session.scalars(query)).all()


def router_port(driver_config: dict[str, Any] | None) -> int | None:
    """The stable port a service's router listens on, when it has a router."""
    config = driver_config or {}
    port = config.get("router_port")
    if not config.get("router") or isinstance(port, bool) or not isinstance(port, int):
        return None
    return port if 1 <= port <= 65535 else None  # out of range: the driver's 422 says so


async def router_port_user(
    session: AsyncSession, port: int, *, exclude: uuid.UUID | None = None
) -> Service | None:
    """The live service (any environment) whose router listens on `port`, other than `exclude`."""
    rows = await session.scalars(sa.select(Service).where(Service.deleted_at.is_(None)))
    return next((s for s in rows if s.id != exclude and router_port(s.driver_config) == port), None)


async def describe_port_user(session: AsyncSession, actor: Principal, svc: Service) -> str:
    """'service X in environment Y', or a phrase naming nothing when the actor cannot see it."""
    seen = await session.scalar(
        sa.select(Service.id).where(Service.id == svc.id, _live_visible(actor))
    )
    if seen is None:
        return "another pilothouse service"
    env = await session.get(Environment, svc.environment_id)
    return f"service {svc.name!r} in environment {env.name if env else '?'!r}"


async def check_router_port(
    session: AsyncSession,
    actor: Principal,
    driver_config: dict[str, Any] | None,
    *,
    current: Service | None = None,
) -> None:
    """409 when the router port in `driver_config` is another live service's (any environment)
    or is held by another process on this host; the message names the holder."""
    port = router_port(driver_config)
    if port is None:
        return
    detail = {"field": "driver_config.router_port", "port": port}
    other = await router_port_user(session, port, exclude=current.id if current else None)
    if other is not None:
        who = await describe_port_user(session, actor, other)
        raise Conflict(f"router port {port} is already used by {who}", detail=detail)
    if current is not None and router_port(current.driver_config) == port:
        return  # its own port: pilothouse's router may be the one listening on it
    holder = ports.holder(port)
    if holder is not None:
        raise Conflict(f"router port {port} is in use on this host by {holder}", detail=detail)


async def create_service(
    session: AsyncSession,
    actor: Principal,
    *,
    environment: str,
    name: str,
    resources: dict[str, Any],
    **fields: Any,
) -> Service:
    """Create a service in an environment the actor can see; names are unique per environment."""
    env = await environments.get_environment(session, actor, environment)
    require(actor, "manage_services")
    _require_host_changes(actor, {}, fields)
    taken = await session.scalar(
        sa.select(Service.id).where(
            Service.environment_id == env.id, Service.name == name, Service.deleted_at.is_(None)
        )
    )
    if taken:
        raise Conflict(f"service {name!r} already exists in environment {env.name!r}")
    registry.check_config(env.driver, fields.get("driver_config") or {})
    await check_router_port(session, actor, fields.get("driver_config"))
    svc = Service(owner_id=actor.id, environment_id=env.id, name=name, **resources, **fields)
    session.add(svc)
    await session.flush()
    history.record_change(
        session, "service", svc.id, None, "pending", actor=actor, reason="created"
    )
    audit.record(session, actor, "create", "service", svc.id, {"name": name, **resources, **fields})
    return svc


async def update_service(
    session: AsyncSession, actor: Principal, ref: str, changes: dict[str, Any]
) -> Service:
    svc = await get_service(session, actor, ref)
    require(actor, "manage_services")
    _require_host_changes(
        actor, {"command": svc.command, "driver_config": svc.driver_config}, changes
    )
    if "driver_config" in changes:
        await check_router_port(session, actor, changes["driver_config"], current=svc)
    flat = dict(changes)
    flat.update(flat.pop("resources", None) or {})
    if flat.get("driver_config") is not None:
        env = await session.get(Environment, svc.environment_id)
        assert env is not None
        registry.check_config(env.driver, flat["driver_config"])
    for key, value in flat.items():
        setattr(svc, key, value)
    svc.updated_at = utcnow()
    audit.record(session, actor, "update", "service", svc.id, flat)
    return svc


def _require_host_changes(actor: Principal, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Defining what runs on the host is an admin action (403 naming the fields)."""
    changed = host_changes(before, after)
    if changed:
        require(actor, "define_commands", what=", ".join(changed))


async def scale_service(
    session: AsyncSession, actor: Principal, ref: str, target_replicas: int
) -> Service:
    """Set the desired replica count (operator); the driver reconciles to it."""
    svc = await get_service(session, actor, ref)
    require(actor, "scale")
    before = svc.target_replicas
    svc.target_replicas = target_replicas
    svc.updated_at = utcnow()
    audit.record(
        session, actor, "scale", "service", svc.id, {"from": before, "to": target_replicas}
    )
    return svc


async def transition(
    session: AsyncSession, svc: Service, to: str, *, actor: Principal, reason: str | None = None
) -> Service:
    """The only way a service's status changes: checks the table, writes status_history."""
    check_transition(TABLE, "service", svc.status, to)
    before = svc.status
    svc.status = to
    svc.updated_at = utcnow()
    history.record_change(session, "service", svc.id, before, to, actor=actor, reason=reason)
    return svc


async def transition_service(
    session: AsyncSession, actor: Principal, ref: str, to: str, reason: str | None
) -> Service:
    svc = await get_service(session, actor, ref)
    require(actor, "manage_services")
    if to == "deleted":
        return await _soft_delete(session, actor, svc, reason)
    if "stopped" in (to, svc.status) and to != svc.status:
        # Stopping and starting act on replicas and the router: only through the engine.
        verb = "stop" if to == "stopped" else "start"
        raise Conflict(
            f"service {svc.name} cannot go from {svc.status!r} to {to!r} by a status change: "
            f"use `pilothouse service {verb} {svc.name}` (POST /services/{{ref}}/{verb})",
            detail={"entity": "service", "from": svc.status, "to": to},
        )
    return await transition(session, svc, to, actor=actor, reason=reason)


async def delete_service(
    session: AsyncSession, actor: Principal, ref: str, *, reason: str | None = None
) -> Service:
    """Soft delete: status deleted, deleted_at set, the name is free again; the row stays."""
    svc = await get_service(session, actor, ref)
    require(actor, "manage_services")
    return await _soft_delete(session, actor, svc, reason)


async def _soft_delete(
    session: AsyncSession, actor: Principal, svc: Service, reason: str | None
) -> Service:
    await check_no_active(session, svc.id, svc.name)
    await transition(session, svc, "deleted", actor=actor, reason=reason or "deleted")
    svc.deleted_at = utcnow()
    audit.record(session, actor, "delete", "service", svc.id, {"name": svc.name})
    return svc
