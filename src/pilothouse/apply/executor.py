"""Carrying out a plan: each change through the service function the API route uses for it
(create_service, update_environment, set_requirement, set_policy, add_domain, create_target,
create_rule, add_channel...),
so roles, validation and audit entries are theirs."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal
from pilothouse.alerts import service as channels
from pilothouse.apply.plan import Change
from pilothouse.apply.spec import Document
from pilothouse.apply.state import scaling_fields
from pilothouse.autoscaling import service as autoscaling
from pilothouse.autoscaling.schemas import DEFAULTS as SCALING_DEFAULTS
from pilothouse.autoscaling.schemas import PolicySet, merged
from pilothouse.backups import service as backups
from pilothouse.backups.schemas import StorageConfig, TargetCreate, TargetUpdate
from pilothouse.certificates import domains
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import Keyring
from pilothouse.deployments import service as deployments
from pilothouse.environments import service as environments
from pilothouse.errors import ValidationFailed
from pilothouse.metrics import service as metrics
from pilothouse.metrics.schemas import RuleCreate
from pilothouse.services import service as services
from pilothouse.variables import service as variables


class Runner:
    """Carries out a plan's changes, one service call each (the caller owns the transaction)."""

    def __init__(
        self,
        session: AsyncSession,
        actor: Principal,
        keyring: Keyring | None,
        document: Document,
        ids: dict[tuple[str, str], uuid.UUID],
        *,
        dns_target: str | None = None,
    ) -> None:
        self.session, self.actor, self.keyring = session, actor, keyring
        self.document, self.ids = document, dict(ids)
        self.dns_target = dns_target

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

    async def _scaling_policy(self, change: Change) -> None:
        """Through autoscaling's set_policy / delete_policy (its `scale` right, its checks and
        its audit entries): a create gives the fields the file gives, an update the changed
        ones."""
        env_name, name = change.key.split("/", 1)
        ref = self._id("service", change.key)
        if change.action == "delete":
            await autoscaling.delete_policy(self.session, self.actor, ref)
            return
        spec = self.document.environments[env_name].services[name].scaling
        if spec is None:  # the plan has a change only for a policy in the file
            raise ValidationFailed(f"environments.{env_name}.services.{name}.scaling", "missing")
        if change.action == "create":
            await autoscaling.set_policy(self.session, self.actor, ref, spec)
            return
        values = scaling_fields(merged(dict(SCALING_DEFAULTS), spec))
        touched = PolicySet.model_validate({k: values[k] for k in change.top_fields()})
        await autoscaling.set_policy(self.session, self.actor, ref, touched)

    async def _domain(self, change: Change) -> None:
        """Through add_domain / remove_domain (their role check and audit entries); a domain
        has no update: a change to one is refused."""
        name = change.key
        if change.action == "delete":
            await domains.remove_domain(self.session, self.actor, self._id("domain", name))
            return
        env_name, raw, spec = next(
            (e, raw, d)
            for e, env in self.document.environments.items()
            for raw, d in env.domains.items()
            if domains.normalize(raw) == name
        )
        if change.action == "update":
            raise ValidationFailed(
                f"environments.{env_name}.domains.{raw}",
                f"a domain cannot change in place ({', '.join(change.top_fields())}); delete it "
                "(--prune) and declare it anew",
            )
        domain = await domains.add_domain(
            self.session,
            self.actor,
            name,
            service=self._id("service", f"{env_name}/{spec.service}"),
            root=spec.root,
            cdn_enabled=spec.cdn_enabled,
            target=self.dns_target,
            now=utcnow(),
        )
        self.ids[("domain", name)] = domain.id

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
