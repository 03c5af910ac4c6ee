"""Pinned config: a release (deployment) is code plus the exact variable versions it delivered.

- A `deploy`, `restart` or `config_update` pins the variables as they are when it runs (one
  `deployment_pins` row per delivered key: name, source, version; never a value).
- A `rollback` copies the pins of the release it returns to (the last deployment of its
  target artifact that went live), and a `scale`, a service `stop` and `start` those of the
  live release: replicas of one release never drift apart, and a rollback returns to its code
  *and* its config.
- A replica restarted after a crash receives its own deployment's pinned values.
Deployments recorded before pinning existed have no pins and deliver current values.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import Keyring
from pilothouse.deployments import configdiff
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import Deployment, DeploymentPin
from pilothouse.environments.models import Environment
from pilothouse.services.models import Service
from pilothouse.variables import service as variables
from pilothouse.variables.service import Delivery, Pin


def _pin(row: DeploymentPin) -> Pin:
    return Pin(row.key, row.source, row.var_id, row.version, row.is_secret, row.enabled)


async def pins_of(session: AsyncSession, deployment_id: uuid.UUID) -> list[Pin]:
    """A deployment's pins, sorted by key (empty when it has none)."""
    rows = await session.scalars(
        sa.select(DeploymentPin)
        .where(DeploymentPin.deployment_id == deployment_id)
        .order_by(DeploymentPin.key)
    )
    return [_pin(r) for r in rows]


async def pin_deployment(
    session: AsyncSession, deployment: Deployment, service: Service, environment: Environment
) -> str | None:
    """Pin what this deployment delivers, once (a no-op when already pinned); returns a line
    for its log saying where the config comes from, or None when already pinned."""
    if deployment.config_pinned_at is not None:
        return None
    source = (
        await session.get(Deployment, deployment.config_from) if deployment.config_from else None
    )
    if source is not None and source.config_pinned_at is not None:
        pins = await pins_of(session, source.id)
        said = (
            f"config: the {len(pins)} variable version(s) pinned by release {source.id} "
            f"({source.version})"
        )
    else:
        pins = await variables.current_pins(session, environment, service.id)
        said = f"config: {len(pins)} variable version(s) pinned as of now"
        if source is not None:
            said += f" (release {source.id} was recorded before config pinning)"
        deployment.config_from = None
    for pin in pins:
        session.add(
            DeploymentPin(
                deployment_id=deployment.id,
                key=pin.key,
                source=pin.source,
                var_id=pin.var_id,
                version=pin.version,
                is_secret=pin.is_secret,
                enabled=pin.enabled,
            )
        )
    deployment.config_pinned_at = utcnow()
    deployment.driver_settings = configdiff.driver_snapshot(
        environment.driver, service.driver_config, service.target_replicas
    )
    await session.flush()
    return said


async def delivery(
    session: AsyncSession,
    keyring: Keyring,
    environment: Environment,
    service_id: uuid.UUID,
    deployment_id: uuid.UUID | None,
) -> Delivery:
    """What a replica of this release receives: its pinned versions; current values for a
    release recorded before pinning (or a replica that names none)."""
    deployment = await session.get(Deployment, deployment_id) if deployment_id else None
    if deployment is None or deployment.config_pinned_at is None:
        return await variables.for_deployment(session, keyring, environment, service_id)
    pins = await pins_of(session, deployment.id)
    # A new release is checked against the requirements; a copied one was checked when it
    # went live (a requirement added since must not stop a rollback).
    check = deployment.config_from is None
    return await variables.for_pins(session, keyring, environment, pins, check=check)


@dataclass(frozen=True)
class ConfigView:
    """A release's pinned config: names and versions, never values."""

    deployment: Deployment
    pinned: bool
    pinned_at: datetime | None
    copied_from: uuid.UUID | None
    pins: list[Pin]
    driver_settings: dict[str, Any] | None


async def config_of(session: AsyncSession, actor: Principal, ref: str) -> ConfigView:
    """The config version of a deployment the actor can see (by id or unique id prefix)."""
    dep = await deployments.get_deployment(session, actor, ref)
    return ConfigView(
        deployment=dep,
        pinned=dep.config_pinned_at is not None,
        pinned_at=dep.config_pinned_at,
        copied_from=dep.config_from,
        pins=await pins_of(session, dep.id),
        driver_settings=dep.driver_settings,
    )


@dataclass(frozen=True)
class ReleaseDiff:
    """What changed from release `before` to release `after`."""

    before: ConfigView
    after: ConfigView
    variables: list[configdiff.VarChange]
    settings: list[configdiff.SettingChange]
    notes: list[str]


async def diff_releases(
    session: AsyncSession, actor: Principal, left: str, right: str
) -> ReleaseDiff:
    """Artifact, variables (by name and version) and driver settings between two releases."""
    a = await config_of(session, actor, left)
    b = await config_of(session, actor, right)
    notes = []
    for view in (a, b):
        if not view.pinned:
            notes.append(
                f"release {view.deployment.id} has no pinned config (recorded before pinning, "
                "or not started yet): its variables and driver settings are unknown"
            )
    if a.deployment.service_id != b.deployment.service_id:
        notes.append("the two releases are of different services")
    changes = configdiff.diff_pins(a.pins, b.pins) if a.pinned and b.pinned else []
    settings = (
        configdiff.diff_settings(a.driver_settings, b.driver_settings)
        if a.pinned and b.pinned
        else []
    )
    return ReleaseDiff(a, b, changes, settings, notes)


def labels(pins: Sequence[Pin]) -> list[dict[str, Any]]:
    """Pins as rows for a table: key, source, version (a flag's state), secret."""
    return [
        {
            "key": p.key,
            "source": p.source,
            "version": configdiff.pin_label(p),
            "secret": p.is_secret,
        }
        for p in pins
    ]
