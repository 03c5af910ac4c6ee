"""Sections of the service page that come from other capabilities, and the hook that adds them.

A capability's section is a template and a loader: `load(session, principal, service)` returns
the template's context, through the capability's own service functions (so the API's checks
apply). `SERVICE_SECTIONS` lists them in page order; certificates, domains and findings slot in
the same way when those capabilities land.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.autoscaling import rules
from pilothouse.autoscaling import service as autoscaling
from pilothouse.services.models import Service


@dataclass(frozen=True)
class Section:
    """A part of the service page: `template` is included with what `load` returns."""

    template: str
    load: Callable[[AsyncSession, Principal, Service], Awaitable[dict[str, Any]]]


async def _scaling(session: AsyncSession, actor: Principal, svc: Service) -> dict[str, Any]:
    """The service's scaling policy (if any) with its thresholds as the decisions word them
    ("80%", or a named metric's value), and its newest 20 scaling events."""
    policy = await autoscaling.policy_of(session, svc.id)
    events = await autoscaling.list_events(session, actor, str(svc.id), limit=20)
    shown = rules.thresholds(rules.Policy.of(policy)) if policy is not None else None
    return {"policy": policy, "thresholds": shown, "events": events}


SERVICE_SECTIONS: list[Section] = [Section("_section_scaling.html", _scaling)]
