"""Plan and apply a pilothouse.yaml against the store, and export the live state.

The live state is read with the caller's visibility; applying a plan calls, change by change,
the same service functions the API's routes call (so every role check, validation and audit
entry is theirs), inside the caller's one transaction: a failure anywhere rolls all of it back.
Applying a file whose plan is empty calls nothing and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require
from pilothouse.alerts import service as channels
from pilothouse.alerts import settings as channel_settings
from pilothouse.apply.executor import Runner
from pilothouse.apply.load import DocumentInvalid, Marks, load
from pilothouse.apply.plan import ABSENT, Plan, Secret, State, make_plan
from pilothouse.apply.spec import Document
from pilothouse.apply.state import (
    desired_state,
    digest,
    digest_key,
    domain_fields,
    empty_state,
    environment_fields,
    export_document,
    ref_source,
    referenced,
    scaling_fields,
    service_fields,
    target_fields,
)
from pilothouse.audit import service as audit
from pilothouse.autoscaling import service as autoscaling
from pilothouse.backups import service as backups
from pilothouse.certificates import domains
from pilothouse.core.crypto import Keyring
from pilothouse.environments import service as environments
from pilothouse.errors import Conflict, ValidationFailed
from pilothouse.metrics import service as metrics
from pilothouse.services import service as services
from pilothouse.variables import service as variables


@dataclass(frozen=True)
class Planned:
    """A plan with what is needed to carry it out."""

    plan: Plan
    document: Document
    ids: dict[tuple[str, str], uuid.UUID]

    @property
    def fingerprint(self) -> str:
        """Identifies the plan's content: an apply may insist the plan is still this one."""
        return fingerprint(self.plan)


def fingerprint(plan: Plan) -> str:
    body = [
        [c.action, c.kind, c.key, [[f.path, repr(f.before), repr(f.after)] for f in c.fields]]
        for c in plan.changes
    ]
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()[:16]


# -- live state ---------------------------------------------------------------------------------


async def live_state(
    session: AsyncSession, actor: Principal, keyring: Keyring | None
) -> tuple[State, dict[tuple[str, str], uuid.UUID], dict[str, uuid.UUID]]:
    """What the actor can see, in the plan's shape; the ids of the objects by (kind, key); the
    ids of the environments by name."""
    state = empty_state()
    ids: dict[tuple[str, str], uuid.UUID] = {}
    envs = list(await environments.list_environments(session, actor))
    env_ids = {e.name: e.id for e in envs}
    env_names = {e.id: e.name for e in envs}
    for env in envs:
        state["environment"][env.name] = environment_fields(
            env.type, env.domain, env.driver, env.config, env.features, env.limits, env.is_active
        )
        ids[("environment", env.name)] = env.id
        for req in await variables.list_requirements(session, actor, str(env.id)):
            key = f"{env.name}/{req.key}"
            state["requirement"][key] = {
                "required": req.required,
                "rule": req.rule,
                "args": dict(req.args or {}),
            }
            ids[("requirement", key)] = req.id
    svc_names: dict[uuid.UUID, str] = {}
    for svc in await services.list_services(session, actor):
        env_name = env_names.get(svc.environment_id)
        if env_name is None:
            continue
        key = f"{env_name}/{svc.name}"
        svc_names[svc.id] = svc.name
        state["service"][key] = service_fields(
            svc.image,
            svc.command,
            svc.target_replicas,
            {k: getattr(svc, k) for k in services.RESOURCE_FIELDS},
            svc.public_url,
            svc.driver_config,
            svc.health_check,
        )
        ids[("service", key)] = svc.id
    svc_keys = {i: k for (kind, k), i in ids.items() if kind == "service"}
    for svc_id, policy in (await autoscaling.policies_of(session, list(svc_keys))).items():
        key = svc_keys[svc_id]
        state["scaling_policy"][key] = scaling_fields(autoscaling.values_of(policy))
        ids[("scaling_policy", key)] = policy.id
    for domain in await domains.list_domains(session, actor):
        env_name = env_names.get(domain.environment_id)
        svc_name = svc_names.get(domain.service_id)
        if env_name is None or svc_name is None:
            continue
        state["domain"][domain.domain_name] = domain_fields(
            env_name, svc_name, domain.root_domain, domain.cdn_enabled
        )
        ids[("domain", domain.domain_name)] = domain.id
    targets = [
        t
        for t in await backups.list_targets(session, actor)
        if t.name != backups.SELF_TARGET and t.environment_id in env_names
    ]
    rows = list(await channels.list_channels(session, actor))
    sources: dict[str, str] = {}
    secret_key = digest_key(keyring) if keyring is not None else b""
    if keyring is not None and (targets or rows):
        values = await variables.environment_values(session, list(env_names), keyring)
        for (env_id, var), value in sorted(values.items(), key=lambda kv: kv[0][1]):
            sources.setdefault(digest(value, secret_key), ref_source(env_names[env_id], var))
    for target in targets:
        dsn: Any = None
        if keyring is not None:
            hashed = digest(backups.target_dsn(target, keyring), secret_key)
            dsn = Secret(hashed, sources.get(hashed, ""))
        state["backup_target"][target.name] = target_fields(
            env_names[target.environment_id],  # type: ignore[index]
            dsn,
            target.schedule,
            target.drill_schedule,
            target.storage or {},
            target.retention,
            target.max_retries,
            target.retry_delay_seconds,
            target.before_deploy,
            target.enabled,
            target.content_checksums,
        )
        ids[("backup_target", target.name)] = target.id
    for rule in await metrics.list_rules(session, actor):
        env_name = env_names.get(rule.environment_id) if rule.environment_id else None
        if rule.is_default or env_name is None:
            continue
        if rule.service_id is not None and rule.service_id not in svc_names:
            continue
        key = f"{env_name}/{rule.name}"
        state["alert_rule"][key] = {
            "service": svc_names.get(rule.service_id) if rule.service_id else None,
            "metric": rule.metric,
            "tags": dict(rule.tags or {}),
            "expression": rule.expression,
            "per_metric": rule.per_metric,
            "window_seconds": rule.window_seconds,
            "comparator": rule.comparator,
            "warning": rule.warning,
            "critical": rule.critical,
            "for_m": rule.for_m,
            "for_n": rule.for_n,
            "recover_n": rule.recover_n,
        }
        ids[("alert_rule", key)] = rule.id
    for channel in rows:
        full = channels.open_config(channel, keyring) if keyring else dict(channel.config or {})
        sealed = channel_settings.SEALED.get(channel.kind, ())
        secrets = {
            k: Secret(digest(str(v), secret_key), sources.get(digest(str(v), secret_key), ""))
            for k, v in full.items()
            if k in sealed and v is not None
        }
        state["channel"][channel.name] = {
            "kind": channel.kind,
            "environment": env_names.get(channel.environment_id)
            if channel.environment_id
            else None,
            "config": {k: v for k, v in full.items() if k not in sealed},
            "secrets": secrets,
            "is_active": channel.is_active,
            "deploy_events": sorted(channel.deploy_events or []),
            "deploy_environments": list(channel.deploy_environments or []),
        }
        ids[("channel", channel.name)] = channel.id
    return state, ids, env_ids


# -- plan ---------------------------------------------------------------------------------------


async def plan_document(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring | None,
    text: str,
    *,
    prune: bool = False,
) -> Planned:
    """Validate the file (every problem at once, with line and column) and plan it against the
    live state the actor can see."""
    require(actor, "read")
    document, marks = load(text)
    live, ids, env_ids = await live_state(session, actor, keyring)
    values = await _values(session, document, env_ids, keyring, marks)
    secret_key = digest_key(keyring) if keyring is not None else None
    desired, problems = desired_state(document, marks, values, set(env_ids), secret_key=secret_key)
    if problems:
        raise DocumentInvalid(problems)
    return Planned(make_plan(desired, live, prune=prune), document, ids)


async def _values(
    session: AsyncSession,
    document: Document,
    env_ids: dict[str, uuid.UUID],
    keyring: Keyring | None,
    marks: Marks,
) -> dict[tuple[str, str], str]:
    wanted = referenced(document)
    if not wanted:
        return {}
    if keyring is None:
        raise ValidationFailed("document", "secret references need the server's master key")
    found = await variables.environment_values(
        session, [env_ids[e] for e, _ in wanted if e in env_ids], keyring
    )
    names = {v: k for k, v in env_ids.items()}
    return {(names[env_id], key): value for (env_id, key), value in found.items()}


# -- apply --------------------------------------------------------------------------------------


async def apply_document(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring | None,
    text: str,
    *,
    prune: bool = False,
    expect: str | None = None,
    dns_target: str | None = None,
) -> Planned:
    """Plan the file, then carry the plan out through the service functions (one transaction:
    the caller's). With `expect`, refuse (409) when the plan is no longer the one shown.
    `dns_target` is the endpoint new domains point to (PILOTHOUSE_DNS_TARGET)."""
    planned = await plan_document(session, actor, keyring, text, prune=prune)
    if expect is not None and planned.fingerprint != expect:
        raise Conflict(
            f"the live state changed since the plan was shown (plan {expect} is now "
            f"{planned.fingerprint}); plan again",
            detail={"from": expect, "to": planned.fingerprint},
        )
    if planned.plan.empty:
        return planned
    runner = Runner(session, actor, keyring, planned.document, planned.ids, dns_target=dns_target)
    for change in planned.plan.changes:
        await runner.run(change)
    counts = planned.plan.counts()
    audit.record(session, actor, "apply", "configuration", planned.fingerprint, counts)
    return planned


# -- export -------------------------------------------------------------------------------------


async def export_yaml(session: AsyncSession, actor: Principal, keyring: Keyring | None) -> str:
    """The live state the actor can see as a pilothouse.yaml (secrets as variable references)."""
    require(actor, "read")
    live, _, _ = await live_state(session, actor, keyring)
    header = (
        "# pilothouse.yaml exported from the live state; `pilothouse apply -f` it back to no "
        "change.\n"
    )
    return header + yaml.safe_dump(export_document(live), sort_keys=False, allow_unicode=True)


def plan_json(plan: Plan) -> list[dict[str, Any]]:
    """The plan's changes as JSON (secrets shown by their source only)."""
    return [
        {
            "action": c.action,
            "kind": c.kind,
            "key": c.key,
            "fields": [
                {"field": f.path, "before": _shown(f.before), "after": _shown(f.after)}
                for f in c.fields
            ],
        }
        for c in plan.changes
    ]


def _shown(value: Any) -> Any:
    if value is ABSENT:
        return None
    if isinstance(value, Secret):
        return repr(value)
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value
