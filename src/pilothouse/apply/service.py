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
from pilothouse.apply.load import DocumentInvalid, Marks, load
from pilothouse.apply.plan import ABSENT, Change, Plan, Secret, State, make_plan
from pilothouse.apply.spec import Document
from pilothouse.apply.state import (
    desired_state,
    digest,
    empty_state,
    environment_fields,
    export_document,
    ref_source,
    referenced,
    service_fields,
)
from pilothouse.audit import service as audit
from pilothouse.backups import service as backups
from pilothouse.backups.schemas import StorageConfig, TargetCreate, TargetUpdate
from pilothouse.core.crypto import Keyring
from pilothouse.deployments import service as deployments
from pilothouse.environments import service as environments
from pilothouse.errors import Conflict, ValidationFailed
from pilothouse.metrics import service as metrics
from pilothouse.metrics.schemas import RuleCreate
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
    targets = [
        t
        for t in await backups.list_targets(session, actor)
        if t.name != backups.SELF_TARGET and t.environment_id in env_names
    ]
    rows = list(await channels.list_channels(session, actor))
    sources: dict[str, str] = {}
    if keyring is not None and (targets or rows):
        values = await variables.environment_values(session, list(env_names), keyring)
        for (env_id, var), value in sorted(values.items(), key=lambda kv: kv[0][1]):
            sources.setdefault(digest(value), ref_source(env_names[env_id], var))
    for target in targets:
        dsn: Any = None
        if keyring is not None:
            hashed = digest(backups.target_dsn(target, keyring))
            dsn = Secret(hashed, sources.get(hashed, ""))
        state["backup_target"][target.name] = {
            "environment": env_names[target.environment_id],  # type: ignore[index]
            "dsn": dsn,
            "schedule": target.schedule,
            "drill_schedule": target.drill_schedule,
            "storage": dict(target.storage or {}),
            "retention": dict(target.retention or {}),
            "max_retries": target.max_retries,
            "retry_delay_seconds": target.retry_delay_seconds,
            "before_deploy": target.before_deploy,
            "enabled": target.enabled,
            "content_checksums": target.content_checksums,
        }
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
            k: Secret(digest(str(v)), sources.get(digest(str(v)), ""))
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
    desired, problems = desired_state(document, marks, values, set(env_ids))
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
) -> Planned:
    """Plan the file, then carry the plan out through the service functions (one transaction:
    the caller's). With `expect`, refuse (409) when the plan is no longer the one shown."""
    planned = await plan_document(session, actor, keyring, text, prune=prune)
    if expect is not None and planned.fingerprint != expect:
        raise Conflict(
            f"the live state changed since the plan was shown (plan {expect} is now "
            f"{planned.fingerprint}); plan again",
            detail={"from": expect, "to": planned.fingerprint},
        )
    if planned.plan.empty:
        return planned
    runner = _Runner(session, actor, keyring, planned)
    for change in planned.plan.changes:
        await runner.run(change)
    counts = planned.plan.counts()
    audit.record(session, actor, "apply", "configuration", planned.fingerprint, counts)
    return planned


class _Runner:
    def __init__(
        self, session: AsyncSession, actor: Principal, keyring: Keyring | None, planned: Planned
    ) -> None:
        self.session, self.actor, self.keyring = session, actor, keyring
        self.document, self.ids = planned.document, dict(planned.ids)

    def _keys(self) -> Keyring:
        if self.keyring is None:
            raise ValidationFailed("document", "this change needs the server's master key")
        return self.keyring

    async def run(self, change: Change) -> None:
        handler = getattr(self, f"_{change.kind}")
        await handler(change)

    def _id(self, kind: str, key: str) -> str:
        return str(self.ids[(kind, key)])

    async def _environment(self, change: Change) -> None:
        name = change.key
        if change.action == "delete":
            await environments.delete_environment(
                self.session, self.actor, self._id("environment", name)
            )
            return
        spec = self.document.environments[name]
        data: dict[str, Any] = {
            "type": spec.type,
            "domain": spec.domain,
            "driver": spec.driver,
            "config": spec.config.model_dump(mode="json", exclude_unset=True),
            "features": dict(spec.features),
            "limits": spec.limits.model_dump(exclude_none=True),
            "is_active": spec.is_active,
        }
        if change.action == "create":
            active = data.pop("is_active")
            env = await environments.create_environment(
                self.session, self.actor, name=name, keyring=self.keyring, **data
            )
            self.ids[("environment", name)] = env.id
            if not active:
                await environments.update_environment(
                    self.session, self.actor, str(env.id), {"is_active": False}
                )
            return
        changes = {k: data[k] for k in change.top_fields()}
        await environments.update_environment(
            self.session, self.actor, self._id("environment", name), changes, keyring=self.keyring
        )

    async def _requirement(self, change: Change) -> None:
        env_name, key = change.key.split("/", 1)
        if change.action == "delete":
            await variables.delete_requirement(self.session, self.actor, env_name, key)
            return
        spec = self.document.environments[env_name].requirements[key]
        await variables.set_requirement(
            self.session,
            self.actor,
            self._id("environment", env_name),
            key,
            required=spec.required,
            rule=spec.rule,
            args=dict(spec.args),
        )

    async def _service(self, change: Change) -> None:
        env_name, name = change.key.split("/", 1)
        if change.action == "delete":
            await services.delete_service(
                self.session, self.actor, self._id("service", change.key), reason="pruned by apply"
            )
            return
        spec = self.document.environments[env_name].services[name]
        data: dict[str, Any] = {
            "image": spec.image,
            "command": spec.command,
            "public_url": spec.public_url,
            "driver_config": dict(spec.driver_config),
            "health_check": spec.health_check.model_dump(mode="json", exclude_unset=True),
        }
        if change.action == "create":
            svc = await services.create_service(
                self.session,
                self.actor,
                environment=self._id("environment", env_name),
                name=name,
                resources=spec.resources.model_dump(),
                target_replicas=spec.target_replicas,
                **data,
            )
            self.ids[("service", change.key)] = svc.id
            return
        ref = self._id("service", change.key)
        fields = change.top_fields()
        changes = {k: data[k] for k in fields if k in data}
        if "resources" in fields:
            changes["resources"] = spec.resources.model_dump()
        if changes:
            await services.update_service(self.session, self.actor, ref, changes)
        if "target_replicas" in fields:
            await deployments.scale(self.session, self.actor, ref, spec.target_replicas)

    async def _backup_target(self, change: Change) -> None:
        name = change.key
        if change.action == "delete":
            await backups.delete_target(self.session, self.actor, self._id("backup_target", name))
            return
        env_name = next(e for e, spec in self.document.environments.items() if name in spec.backups)
        spec = self.document.environments[env_name].backups[name]
        ref = spec.dsn
        dsn = (await self._value(ref.environment or env_name, ref.variable)) or ""
        fields: dict[str, Any] = {
            "schedule": spec.schedule,
            "drill_schedule": spec.drill_schedule,
            "storage": StorageConfig.model_validate(spec.storage.model_dump()),
            "retention": spec.retention,
            "max_retries": spec.max_retries,
            "retry_delay_seconds": spec.retry_delay_seconds,
            "before_deploy": spec.before_deploy,
            "enabled": spec.enabled,
            "content_checksums": spec.content_checksums,
            "force": spec.force,
        }
        if change.action == "create":
            given = {k for k in spec.model_fields_set if k in fields}
            data = TargetCreate.model_validate(
                {
                    "name": name,
                    "dsn": dsn,
                    "environment": self._id("environment", env_name),
                    **{k: v for k, v in fields.items() if k in given or k == "force"},
                }
            )
            await backups.create_target(self.session, self.actor, self._keys(), data)
            return
        touched = change.top_fields()
        if "environment" in touched:
            raise ValidationFailed(
                f"environments.{env_name}.backups.{name}",
                "a backup target cannot move to another environment; delete it (--prune) and "
                "declare it anew under another name",
            )
        update: dict[str, Any] = {k: fields[k] for k in touched if k in fields}
        if "dsn" in touched:
            update["dsn"] = dsn
        if "schedule" in update:
            update["force"] = spec.force
            update["schedule"] = update["schedule"] or ""
        if "drill_schedule" in update:
            update["drill_schedule"] = update["drill_schedule"] or ""
        await backups.update_target(
            self.session,
            self.actor,
            self._keys(),
            self._id("backup_target", name),
            TargetUpdate.model_validate(update),
        )

    async def _value(self, env: str, variable: str) -> str | None:
        env_id = self.ids.get(("environment", env))
        if env_id is None:
            return None
        found = await variables.environment_values(self.session, [env_id], self._keys())
        return found.get((env_id, variable))

    async def _alert_rule(self, change: Change) -> None:
        env_name, name = change.key.split("/", 1)
        if change.action == "delete":
            await metrics.delete_rule(
                self.session, self.actor, self.ids[("alert_rule", change.key)]
            )
            return
        spec = self.document.environments[env_name].alert_rules[name]
        body = RuleCreate.model_validate(
            {
                "name": name,
                "environment": self._id("environment", env_name),
                **spec.model_dump(),
            }
        )
        if spec.service is not None:
            body = body.model_copy(
                update={"service": self._id("service", f"{env_name}/{spec.service}")}
            )
        if change.action == "create":
            rule = await metrics.create_rule(self.session, self.actor, body)
            self.ids[("alert_rule", change.key)] = rule.id
            return
        await metrics.update_rule(
            self.session, self.actor, self.ids[("alert_rule", change.key)], body
        )

    async def _channel(self, change: Change) -> None:
        name = change.key
        if change.action == "delete":
            await channels.delete_channel(self.session, self.actor, self._id("channel", name))
            return
        spec = self.document.channels[name]
        config = dict(spec.config)
        for key, ref in spec.secrets.items():
            config[key] = await self._value(ref.environment or spec.environment or "", ref.variable)
        if change.action == "create":
            await channels.add_channel(
                self.session,
                self.actor,
                self._keys(),
                name=name,
                kind=spec.kind,
                config=config,
                environment=self._id("environment", spec.environment) if spec.environment else None,
                deploy_events=spec.deploy_events,
                deploy_environments=spec.deploy_environments,
            )
            if not spec.is_active:
                await channels.update_channel(
                    self.session, self.actor, self._keys(), name, is_active=False
                )
            return
        touched = change.top_fields()
        for fixed in ("kind", "environment"):
            if fixed in touched:
                raise ValidationFailed(
                    f"channels.{name}.{fixed}",
                    f"a channel's {fixed} cannot change; delete it (--prune) and add it anew",
                )
        await channels.update_channel(
            self.session,
            self.actor,
            self._keys(),
            self._id("channel", name),
            config=config if {"config", "secrets"} & set(touched) else None,
            is_active=spec.is_active if "is_active" in touched else None,
            deploy_events=spec.deploy_events if "deploy_events" in touched else None,
            deploy_environments=(
                spec.deploy_environments if "deploy_environments" in touched else None
            ),
        )


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
