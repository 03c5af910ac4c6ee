"""Desired state (from the file) and live state (from the store) in the plan's one shape, and the
live state written back as a file (export).

Every field is put in a normal form on both sides, so that what the file says and what the store
holds compare equal when they mean the same: a health check with its defaults filled in, limits
without the unset ones, an alert window in seconds. Secrets are compared by digest only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from pilothouse.alerts import settings as channel_settings
from pilothouse.apply.load import Marks, Problem
from pilothouse.apply.plan import KINDS, Secret, State
from pilothouse.apply.spec import Document, EnvironmentSpec, ScalingSpec, SecretRef
from pilothouse.autoscaling.schemas import DEFAULTS as SCALING_DEFAULTS
from pilothouse.autoscaling.schemas import merged as merged_policy
from pilothouse.certificates import domains as domain_rules
from pilothouse.core.crypto import Keyring
from pilothouse.drivers import registry
from pilothouse.environments import sealing
from pilothouse.environments.schemas import EnvironmentConfig
from pilothouse.errors import ValidationFailed
from pilothouse.healthchecks.spec import parse as parse_health
from pilothouse.metrics.schemas import parse_duration

#: (environment, variable) -> clear value, for the variables the file refers to.
Values = Mapping[tuple[str, str], str]


DIGEST_LABEL = b"pilothouse apply secret digest v1"


def digest_key(keyring: Keyring) -> bytes:
    """The key secrets are digested with: derived from the server's current data key, so a
    digest means nothing outside this server (a plan cannot confirm a guessed secret)."""
    return hmac.new(keyring.key(keyring.current), DIGEST_LABEL, hashlib.sha256).digest()


def digest(value: str, key: bytes) -> str:
    """A keyed digest (HMAC-SHA-256) of a secret: comparable only under the same key."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def ref_source(env: str, variable: str) -> str:
    return f"variable {variable} of {env}"


def empty_state() -> State:
    return {kind: {} for kind in KINDS}


# -- normal forms shared by both sides ----------------------------------------------------------


def env_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    return EnvironmentConfig.model_validate(dict(config or {})).model_dump(mode="json")


def health(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    return parse_health(dict(raw or {})).model_dump(mode="json")


def environment_fields(
    type_: str,
    domain: str | None,
    driver: str,
    config: Mapping[str, Any] | None,
    features: Mapping[str, Any] | None,
    limits: Mapping[str, Any] | None,
    is_active: bool,
) -> dict[str, Any]:
    return {
        "type": type_,
        "domain": domain,
        "driver": driver,
        "config": env_config(config),
        "features": dict(features or {}),
        "limits": {k: v for k, v in (limits or {}).items() if v is not None},
        "is_active": is_active,
    }


def service_fields(
    image: str | None,
    command: str | None,
    target_replicas: int,
    resources: Mapping[str, Any],
    public_url: str | None,
    driver_config: Mapping[str, Any] | None,
    health_check: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        "image": image,
        "command": command,
        "target_replicas": target_replicas,
        "resources": dict(resources),
        "public_url": public_url,
        "driver_config": dict(driver_config or {}),
        "health_check": health(health_check),
    }


def scaling_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """A complete scaling policy's fields (autoscaling's DEFAULTS keys), as plain data."""
    out = {name: values[name] for name in SCALING_DEFAULTS}
    out["metric_tags"] = dict(out["metric_tags"] or {})
    out["schedules"] = [dict(s) for s in out["schedules"] or []]
    return out


def domain_fields(environment: str, service: str, root: str, cdn_enabled: bool) -> dict[str, Any]:
    return {
        "environment": environment,
        "service": service,
        "root": root,
        "cdn_enabled": cdn_enabled,
    }


def target_fields(
    environment: str,
    dsn: Any,
    schedule: str | None,
    drill_schedule: str | None,
    storage: Mapping[str, Any],
    retention: Mapping[str, Any] | None,
    max_retries: int,
    retry_delay_seconds: int,
    before_deploy: bool,
    enabled: bool,
    content_checksums: bool,
) -> dict[str, Any]:
    """A backup target's compared fields, built the same way for the live and the desired side
    (a field on one side only would be a permanent difference in every plan)."""
    return {
        "environment": environment,
        "dsn": dsn,
        "schedule": schedule,
        "drill_schedule": drill_schedule,
        "storage": dict(storage),
        "retention": dict(retention or {}),
        "max_retries": max_retries,
        "retry_delay_seconds": retry_delay_seconds,
        "before_deploy": before_deploy,
        "enabled": enabled,
        "content_checksums": content_checksums,
    }


def scaling_owns_replicas(scaling: ScalingSpec | None) -> bool:
    """An enabled policy in the file: the autoscaler, not the file, sets the replica count."""
    return scaling is not None and scaling.enabled is not False


# -- desired ------------------------------------------------------------------------------------


def referenced(document: Document) -> set[tuple[str, str]]:
    """Every (environment, variable) the file takes a secret from."""
    out: set[tuple[str, str]] = set()
    for env_name, env in document.environments.items():
        for target in env.backups.values():
            out.add((target.dsn.environment or env_name, target.dsn.variable))
    for channel in document.channels.values():
        for ref in channel.secrets.values():
            if ref.environment or channel.environment:
                out.add((ref.environment or channel.environment or "", ref.variable))
    return out


def _secret(
    values: Values,
    ref: SecretRef,
    home: str | None,
    path: tuple[str | int, ...],
    marks: Marks,
    problems: list[Problem],
    key: bytes | None,
) -> Secret | None:
    env = ref.environment or home
    if env is None:
        problems.append(marks.problem((*path, "environment"), "required (no home environment)"))
        return None
    value = values.get((env, ref.variable))
    if value is None:
        problems.append(
            marks.problem(
                (*path, "variable"),
                f"no variable {ref.variable} in environment {env} "
                f"(set it with `pilothouse vars set {ref.variable} --env {env}`)",
            )
        )
        return None
    if key is None:
        raise ValidationFailed("document", "secret references need the server's master key")
    return Secret(digest(value, key), ref_source(env, ref.variable))


def _driver_problems(
    driver: str, config: dict[str, Any], path: tuple[str | int, ...], marks: Marks
) -> list[Problem]:
    """Every key of a service's driver settings its environment's driver refuses."""
    try:
        registry.validate_config(driver, config)
    except ValidationError as exc:
        return [
            marks.problem((*path, *error["loc"]), str(error["msg"]).removeprefix("Value error, "))
            for error in exc.errors()
        ]
    return []


def _environment(name: str, env: EnvironmentSpec) -> dict[str, Any]:
    return environment_fields(
        env.type,
        env.domain,
        env.driver,
        env.config.model_dump(mode="json", exclude_unset=True),
        env.features,
        env.limits.model_dump(exclude_none=True),
        env.is_active,
    )


def desired_state(
    document: Document,
    marks: Marks,
    values: Values,
    known_environments: set[str] = frozenset(),  # type: ignore[assignment]
    *,
    secret_key: bytes | None = None,
) -> tuple[State, list[Problem]]:
    """The state the file asks for, and the problems found resolving it (references to
    variables that are not set, credentials written inline, unknown environments or services).
    `known_environments` are the live ones (a channel may refer to them too); `secret_key`
    digests secrets (`digest_key`; needed only when the file refers to some)."""
    state = empty_state()
    problems: list[Problem] = []
    declared = set(document.environments)
    environments = declared | set(known_environments)
    for env_name, env in document.environments.items():
        base = ("environments", env_name)
        if sealing.credentials(env.config.model_dump(mode="json")):
            problems.append(
                marks.problem(
                    (*base, "config"),
                    "credentials must not be written in the file (keep them in variables)",
                )
            )
        state["environment"][env_name] = _environment(env_name, env)
        for key, req in env.requirements.items():
            state["requirement"][f"{env_name}/{key}"] = {
                "required": req.required,
                "rule": req.rule,
                "args": dict(req.args),
            }
        for svc_name, svc in env.services.items():
            path: tuple[str | int, ...] = (*base, "services", svc_name, "driver_config")
            problems.extend(_driver_problems(env.driver, svc.driver_config, path, marks))
            fields = service_fields(
                svc.image,
                svc.command,
                svc.target_replicas,
                svc.resources.model_dump(),
                svc.public_url,
                svc.driver_config,
                svc.health_check.model_dump(mode="json", exclude_unset=True),
            )
            if scaling_owns_replicas(svc.scaling):
                del fields["target_replicas"]
            state["service"][f"{env_name}/{svc_name}"] = fields
            if svc.scaling is not None:
                path = (*base, "services", svc_name, "scaling")
                try:
                    policy = merged_policy(dict(SCALING_DEFAULTS), svc.scaling)
                except ValidationFailed as exc:
                    field_path = [int(p) if p.isdigit() else p for p in exc.field.split(".")]
                    problems.append(marks.problem((*path, *field_path), exc.rule))
                else:
                    state["scaling_policy"][f"{env_name}/{svc_name}"] = scaling_fields(policy)
        for raw_name, spec in env.domains.items():
            path = (*base, "domains", raw_name)
            try:
                domain_name = domain_rules.normalize(raw_name)
                root = domain_rules.split(domain_name, spec.root)[1]
            except ValueError as exc:
                problems.append(marks.problem(path, str(exc)))
                continue
            if domain_name in state["domain"]:
                problems.append(marks.problem(path, "domain names are unique across environments"))
            if spec.service not in env.services:
                problems.append(
                    marks.problem((*path, "service"), f"no service {spec.service} in {env_name}")
                )
            state["domain"][domain_name] = domain_fields(
                env_name, spec.service, root, spec.cdn_enabled
            )
        for target_name, target in env.backups.items():
            path = (*base, "backups", target_name)
            if target_name in state["backup_target"]:
                problems.append(
                    marks.problem(path, "backup target names are unique across environments")
                )
            dsn = _secret(values, target.dsn, env_name, (*path, "dsn"), marks, problems, secret_key)
            schedule = target.schedule
            if (
                env.type == "development"
                and "schedule" not in target.model_fields_set
                and not target.force
            ):
                schedule = None
            state["backup_target"][target_name] = target_fields(
                env_name,
                dsn,
                schedule,
                target.drill_schedule,
                target.storage.model_dump(exclude_none=True),
                target.retention,
                target.max_retries,
                target.retry_delay_seconds,
                target.before_deploy,
                target.enabled,
                target.content_checksums,
            )
        for rule_name, rule in env.alert_rules.items():
            path = (*base, "alert_rules", rule_name)
            if rule.service is not None and rule.service not in env.services:
                problems.append(
                    marks.problem((*path, "service"), f"no service {rule.service} in {env_name}")
                )
            if rule.for_m > rule.for_n:
                problems.append(marks.problem((*path, "for_m"), "must not exceed for_n"))
            if rule.warning is None and rule.critical is None:
                problems.append(marks.problem(path, "give a warning or a critical level"))
            if rule.expression == "ratio" and not rule.per_metric:
                problems.append(marks.problem((*path, "per_metric"), "required for a ratio"))
            state["alert_rule"][f"{env_name}/{rule_name}"] = {
                "service": rule.service,
                "metric": rule.metric,
                "tags": dict(rule.tags),
                "expression": rule.expression,
                "per_metric": rule.per_metric,
                "window_seconds": int(parse_duration(rule.window).total_seconds()),
                "comparator": rule.comparator,
                "warning": rule.warning,
                "critical": rule.critical,
                "for_m": rule.for_m,
                "for_n": rule.for_n,
                "recover_n": rule.recover_n,
            }
    for channel_name, channel in document.channels.items():
        path = ("channels", channel_name)
        env_refs: list[tuple[tuple[str | int, ...], str | None]] = [
            ((*path, "environment"), channel.environment),
            *[
                ((*path, "deploy_environments", i), e)
                for i, e in enumerate(channel.deploy_environments)
            ],
        ]
        for ref_path, env_ref in env_refs:
            if env_ref is not None and env_ref not in environments:
                problems.append(marks.problem(ref_path, f"no environment {env_ref}"))
        inline = [k for k in channel_settings.SEALED[channel.kind] if k in channel.config]
        for key in inline:
            problems.append(
                marks.problem(
                    (*path, "config", key), "a credential: give it under `secrets` as a variable"
                )
            )
        secrets: dict[str, Any] = {}
        clear: dict[str, Any] = dict(channel.config)
        for key, ref in channel.secrets.items():
            if key not in channel_settings.SEALED[channel.kind]:
                problems.append(
                    marks.problem((*path, "secrets", key), f"not a {channel.kind} credential")
                )
                continue
            found = _secret(
                values,
                ref,
                channel.environment,
                (*path, "secrets", key),
                marks,
                problems,
                secret_key,
            )
            if found is not None:
                secrets[key] = found
                clear[key] = values[(ref.environment or channel.environment or "", ref.variable)]
        shown: dict[str, Any] = {}
        if not inline and len(secrets) == len(channel.secrets):
            try:
                normal = channel_settings.validate(channel.kind, clear)
            except ValidationFailed as exc:
                field = exc.field.removeprefix("config.")
                where = "secrets" if field in channel.secrets else "config"
                problems.append(marks.problem((*path, where, field), exc.rule))
                normal = {}
            shown = {k: v for k, v in normal.items() if k not in channel.secrets}
        state["channel"][channel_name] = {
            "kind": channel.kind,
            "environment": channel.environment,
            "config": shown,
            "secrets": secrets,
            "is_active": channel.is_active,
            "deploy_events": sorted(channel.deploy_events),
            "deploy_environments": list(dict.fromkeys(channel.deploy_environments)),
        }
    return state, problems


# -- export -------------------------------------------------------------------------------------


def _drop_defaults(data: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in defaults or defaults[k] != v}


def _ref(secret: Any) -> dict[str, str]:
    """A live secret back as a reference (`source` is "variable KEY of ENV"), or a placeholder
    that fails validation until it is pointed at a variable."""
    if isinstance(secret, Secret) and secret.source.startswith("variable "):
        variable, _, env = secret.source.removeprefix("variable ").partition(" of ")
        return {"variable": variable, "environment": env}
    return {"variable": "SET_ME", "environment": "SET_ME"}


def export_document(live: State) -> dict[str, Any]:
    """The live state as a pilothouse.yaml document (defaults left out) that applies back to no
    change: secrets become references to the variables holding the same value."""
    envs: dict[str, Any] = {}
    default_env = environment_fields("development", None, "process", {}, {}, {}, True)
    default_health = health({})
    for name, fields in sorted(live["environment"].items()):
        env = _drop_defaults(dict(fields), default_env)
        if "config" in env:
            env["config"] = _drop_defaults(env["config"], env_config({}))
        envs[name] = env
    for key, fields in sorted(live["requirement"].items()):
        env_name, var = key.split("/", 1)
        req = _drop_defaults(dict(fields), {"required": True, "rule": None, "args": {}})
        envs.setdefault(env_name, {}).setdefault("requirements", {})[var] = req
    default_resources = {"cpu_cores": 0.5, "memory_mb": 512, "gpu_units": 0, "storage_gb": 1}
    for key, fields in sorted(live["service"].items()):
        env_name, svc_name = key.split("/", 1)
        svc = _drop_defaults(
            dict(fields),
            {
                "image": None,
                "command": None,
                "target_replicas": 1,
                "public_url": None,
                "driver_config": {},
                "health_check": default_health,
            },
        )
        if "resources" in svc:
            svc["resources"] = _drop_defaults(svc["resources"], default_resources)
            if not svc["resources"]:
                del svc["resources"]
        if "health_check" in svc:
            svc["health_check"] = _minimal_health(svc["health_check"], default_health)
        envs.setdefault(env_name, {}).setdefault("services", {})[svc_name] = svc
    for key, fields in sorted(live["scaling_policy"].items()):
        env_name, svc_name = key.split("/", 1)
        services = envs.setdefault(env_name, {}).setdefault("services", {})
        services.setdefault(svc_name, {})["scaling"] = _drop_defaults(
            scaling_fields(fields), SCALING_DEFAULTS
        )
    for name, fields in sorted(live["domain"].items()):
        domain = dict(fields)
        env_name = domain.pop("environment")
        if domain["root"] == domain_rules.split(name)[1]:
            del domain["root"]
        if not domain["cdn_enabled"]:
            del domain["cdn_enabled"]
        envs.setdefault(env_name, {}).setdefault("domains", {})[name] = domain
    for name, fields in sorted(live["backup_target"].items()):
        target = dict(fields)
        env_name = target.pop("environment")
        target["dsn"] = _ref(target["dsn"])
        if target["dsn"]["environment"] == env_name:
            del target["dsn"]["environment"]
        target = _drop_defaults(
            target,
            {
                "drill_schedule": "0 4 * * L0",
                "storage": {"kind": "local"},
                "retention": {},
                "max_retries": 3,
                "retry_delay_seconds": 300,
                "before_deploy": False,
                "enabled": True,
                "content_checksums": True,
            },
        )
        env_type = envs.get(env_name, {}).get("type", "development")
        if env_type == "development":
            if target.get("schedule") is not None:
                target["force"] = True
            else:
                target.pop("schedule", None)
        elif target.get("schedule") == "0 2 * * *":
            del target["schedule"]
        envs.setdefault(env_name, {}).setdefault("backups", {})[name] = target
    for key, fields in sorted(live["alert_rule"].items()):
        env_name, rule_name = key.split("/", 1)
        rule = dict(fields)
        rule["window"] = _duration(rule.pop("window_seconds"))
        rule = _drop_defaults(
            rule,
            {
                "service": None,
                "tags": {},
                "per_metric": None,
                "window": "5m",
                "comparator": ">",
                "warning": None,
                "critical": None,
                "for_m": 1,
                "for_n": 1,
                "recover_n": 1,
            },
        )
        envs.setdefault(env_name, {}).setdefault("alert_rules", {})[rule_name] = rule
    channels: dict[str, Any] = {}
    for name, fields in sorted(live["channel"].items()):
        channel = dict(fields)
        channel["secrets"] = {k: _ref(v) for k, v in sorted(channel["secrets"].items())}
        channels[name] = _drop_defaults(
            channel,
            {
                "environment": None,
                "config": {},
                "secrets": {},
                "is_active": True,
                "deploy_events": [],
                "deploy_environments": [],
            },
        )
    document: dict[str, Any] = {"version": 1, "environments": envs}
    if channels:
        document["channels"] = channels
    return document


def _minimal_health(value: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        base = default.get(key)
        if isinstance(item, dict) and isinstance(base, dict):
            nested = _drop_defaults(item, base)
            if nested:
                out[key] = nested
        elif key not in default or base != item:
            out[key] = item
    return out


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
