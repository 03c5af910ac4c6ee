"""Variables: set, unset, list (masked), reveal (admin, audited), history, revert, import,
requirements, the pre-deployment check and the values a deployment receives.

Values are sealed with the master key (core.crypto.seal_value) before they reach the session and
opened only to hand them to a child process, to compare them, or for an admin's reveal. No
function here puts a value into an exception, a log line or an audit entry."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, may, require
from pilothouse.audit import service as audit
from pilothouse.core import redact
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import CryptoError, Keyring, open_value, seal_value
from pilothouse.core.db import Database
from pilothouse.core.keys import process_keyring
from pilothouse.core.logging import register_secrets
from pilothouse.environments import service as environments
from pilothouse.environments.models import Environment
from pilothouse.errors import NotFound, PilothouseError, ValidationFailed
from pilothouse.services import service as services
from pilothouse.services.models import Service
from pilothouse.variables.models import EnvVar, EnvVarVersion, VarRequirement
from pilothouse.variables.rules import (
    Requirement,
    check_all,
    check_args,
    check_key,
    looks_secret,
    secrecy,
)

MASK = "********"
MAX_VALUE = 65536


class KeyMissing(PilothouseError):
    """A stored value was sealed with a key that is not in the keyring."""

    status = 503
    code = "key_missing"


def _open(var_key: str, sealed: str, keyring: Keyring) -> str:
    try:
        return open_value(sealed, keyring)
    except CryptoError as exc:
        raise KeyMissing(f"variable {var_key}: {exc}") from None


@dataclass(frozen=True)
class VarView:
    key: str
    value: str  # MASK for a secret unless revealed
    is_secret: bool
    version: int
    scope: str  # "environment" or the service name
    platform_synced: bool
    updated_at: datetime
    updated_by: str


async def _scope(
    session: AsyncSession, actor: Principal, env: Environment, service: str | None
) -> tuple[str, Service | None]:
    if not service:
        return "", None
    svc = await services.get_service(session, actor, service, environment=env.name)
    if svc.environment_id != env.id:
        raise NotFound(f"service {service!r} not found in environment {env.name!r}")
    return str(svc.id), svc


async def _current(session: AsyncSession, env_id: uuid.UUID, scope: str, key: str) -> EnvVar | None:
    return await session.scalar(
        sa.select(EnvVar).where(
            EnvVar.environment_id == env_id,
            EnvVar.scope == scope,
            EnvVar.key == key,
            EnvVar.deleted_at.is_(None),
        )
    )


def _check_maskable(field: str, value: str) -> None:
    """A secret must be maskable in output (core/redact.py's rule): refused, never leaked."""
    problem = redact.unmaskable(value)
    if problem:
        raise ValidationFailed(field, problem)


def _check_key_value(key: str, value: str | None) -> None:
    problem = check_key(key)
    if problem:
        raise ValidationFailed("key", problem)
    if value is not None and len(value) > MAX_VALUE:
        raise ValidationFailed("value", f"at most {MAX_VALUE} characters")
    if value is not None and "\x00" in value:
        raise ValidationFailed("value", "must not contain NUL characters")


def _check_secrecy(is_secret: bool | None, plain: bool) -> None:
    if is_secret and plain:
        raise ValidationFailed("plain", "cannot be combined with is_secret: true")


async def set_var(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    env_ref: str,
    key: str,
    value: str,
    *,
    is_secret: bool | None = None,
    plain: bool = False,
    service: str | None = None,
    action: str = "set",
) -> tuple[EnvVar, bool]:
    """Create or change a variable; returns it and whether anything changed (a new version).

    For a secret, a caller who may not reveal it is never told that the value was already
    that (no equality oracle): the value is written again as a new version."""
    require(actor, "manage_vars")
    _check_key_value(key, value)
    _check_secrecy(is_secret, plain)
    env = await environments.get_environment(session, actor, env_ref)
    scope, svc = await _scope(session, actor, env, service)
    var = await _current(session, env.id, scope, key)
    secret = secrecy(
        var.is_secret if var is not None else None, key, value, is_secret=is_secret, plain=plain
    )
    if secret:
        _check_maskable("value", value)
        register_secrets([value])
    if var is not None and _unchanged(actor, var, value, secret, keyring):
        return var, False
    written = await _write(
        session, actor, keyring, env, svc, scope, var, key, value, secret, action
    )
    return written, True


def _unchanged(actor: Principal, var: Any, value: str, is_secret: bool, keyring: Keyring) -> bool:
    """True when nothing would change, as far as `actor` may know: a secret is compared only
    for callers who may reveal it (for anyone else it always changes)."""
    if var.is_secret != is_secret:
        return False
    if is_secret and not may(actor, "reveal_secrets"):
        return False
    return _open(var.key, var.value_encrypted, keyring) == value


async def _write(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    env: Environment,
    svc: Service | None,
    scope: str,
    var: EnvVar | None,
    key: str,
    value: str,
    is_secret: bool,
    action: str,
) -> EnvVar:
    """Store a new version of a variable (the caller knows it changed), with its audit entry."""
    made_plain = var is not None and var.is_secret and not is_secret
    if var is not None:
        var.version += 1
    else:
        var = EnvVar(
            environment_id=env.id,
            service_id=svc.id if svc else None,
            scope=scope,
            key=key,
            version=1,
        )
        session.add(var)
    var.value_encrypted = seal_value(value, keyring)
    var.key_id = keyring.current.hex()
    var.is_secret = is_secret
    var.updated_by = actor.name
    var.updated_at = utcnow()
    await session.flush()
    session.add(
        EnvVarVersion(
            var_id=var.id,
            version=var.version,
            action=action,
            value_encrypted=var.value_encrypted,
            key_id=var.key_id,
            is_secret=is_secret,
            actor=actor.name,
        )
    )
    audit.record(
        session,
        actor,
        f"var_{action}",
        "env_var",
        var.id,
        {
            "environment": env.name,
            "scope": svc.name if svc else None,
            "variable": key,
            "version": var.version,
            "is_secret": is_secret,
        },
    )
    if made_plain:
        audit.record(
            session,
            actor,
            "var_made_plain",
            "env_var",
            var.id,
            {"environment": env.name, "variable": key, "version": var.version},
        )
    return var


async def unset_var(
    session: AsyncSession, actor: Principal, env_ref: str, key: str, *, service: str | None = None
) -> EnvVar:
    require(actor, "manage_vars")
    env = await environments.get_environment(session, actor, env_ref)
    scope, svc = await _scope(session, actor, env, service)
    var = await _current(session, env.id, scope, key)
    if var is None:
        raise NotFound(f"variable {key!r} not found in {env.name}{f'/{svc.name}' if svc else ''}")
    var.version += 1
    var.deleted_at = utcnow()
    session.add(
        EnvVarVersion(
            var_id=var.id,
            version=var.version,
            action="unset",
            is_secret=var.is_secret,
            actor=actor.name,
        )
    )
    audit.record(
        session,
        actor,
        "var_unset",
        "env_var",
        var.id,
        {"environment": env.name, "variable": key, "version": var.version},
    )
    return var


async def list_vars(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    env_ref: str,
    *,
    service: str | None = None,
    reveal: bool = False,
) -> list[VarView]:
    """The variables of an environment (or the effective set of a service: the environment's,
    overridden by the service's). Secrets are masked unless an admin asks (audited)."""
    env = await environments.get_environment(session, actor, env_ref)
    scope, svc = await _scope(session, actor, env, service)
    if reveal:
        require(actor, "reveal_secrets")
    rows = await _live_rows(session, env.id, scope)
    views = [
        _view(
            var,
            MASK if var.is_secret and not reveal else _open(var.key, var.value_encrypted, keyring),
            svc,
        )
        for var in rows
    ]
    if reveal:
        _audit_reveal(session, actor, env, svc, sorted(v.key for v in views if v.is_secret))
    return views


def _view(var: Any, value: str, svc: Service | None) -> VarView:
    """A live variable row as shown, with `value` (the clear value, or MASK)."""
    return VarView(
        key=var.key,
        value=value,
        is_secret=var.is_secret,
        version=var.version,
        scope=svc.name if (svc and var.scope) else "environment",
        platform_synced=var.platform_synced,
        updated_at=var.updated_at,
        updated_by=var.updated_by,
    )


def _audit_reveal(
    session: AsyncSession,
    actor: Principal,
    env: Environment,
    svc: Service | None,
    keys: list[str],
) -> None:
    """The audit row of a reveal: which secrets (by key, never values), where."""
    audit.record(
        session,
        actor,
        "var_reveal",
        "environment",
        env.id,
        {"environment": env.name, "scope": svc.name if svc else None, "variables": keys},
    )


async def reveal_var(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    env_ref: str,
    key: str,
    *,
    service: str | None = None,
) -> VarView:
    """One variable's value (the dashboard's reveal button): admin only for a secret, audited
    with just that key; NotFound when the key is not set."""
    env = await environments.get_environment(session, actor, env_ref)
    scope, svc = await _scope(session, actor, env, service)
    require(actor, "reveal_secrets")
    var = next((v for v in await _live_rows(session, env.id, scope) if v.key == key), None)
    if var is None:
        raise NotFound(f"variable {key!r} is not set in {env.name}")
    if var.is_secret:
        _audit_reveal(session, actor, env, svc, [key])
    return _view(var, _open(var.key, var.value_encrypted, keyring), svc)


LIVE_COLUMNS = (
    EnvVar.id,
    EnvVar.key,
    EnvVar.scope,
    EnvVar.value_encrypted,
    EnvVar.is_secret,
    EnvVar.version,
    EnvVar.platform_synced,
    EnvVar.updated_at,
    EnvVar.updated_by,
)


async def _live_rows(session: AsyncSession, env_id: uuid.UUID, scope: str) -> list[Any]:
    """The live variables of an environment, a service's overriding the environment's, sorted
    by key. Plain rows (no ORM objects): this runs before every deployment and every read."""
    scopes = [""] if not scope else ["", scope]
    rows = (
        await session.execute(
            sa.select(*LIVE_COLUMNS).where(
                EnvVar.environment_id == env_id,
                EnvVar.scope.in_(scopes),
                EnvVar.deleted_at.is_(None),
            )
        )
    ).all()
    merged: dict[str, Any] = {}
    for var in sorted(rows, key=lambda v: v.scope != ""):  # service rows override
        merged[var.key] = var
    return [merged[k] for k in sorted(merged)]


async def history(
    session: AsyncSession, actor: Principal, env_ref: str, key: str, *, service: str | None = None
) -> Sequence[EnvVarVersion]:
    """Every version of a variable (including unset ones), oldest first."""
    env = await environments.get_environment(session, actor, env_ref)
    scope, _ = await _scope(session, actor, env, service)
    ids = sa.select(EnvVar.id).where(
        EnvVar.environment_id == env.id, EnvVar.scope == scope, EnvVar.key == key
    )
    rows = (
        await session.scalars(
            sa.select(EnvVarVersion)
            .where(EnvVarVersion.var_id.in_(ids))
            .order_by(EnvVarVersion.created_at, EnvVarVersion.version)
        )
    ).all()
    if not rows:
        raise NotFound(f"variable {key!r} has no history in {env.name}")
    return rows


async def revert(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    env_ref: str,
    key: str,
    to_version: int,
    *,
    service: str | None = None,
) -> EnvVar:
    """Set the variable back to the value it had at `to_version` (a new version)."""
    versions = await history(session, actor, env_ref, key, service=service)
    match = [v for v in versions if v.version == to_version]
    if not match or match[-1].value_encrypted is None:
        raise NotFound(f"variable {key!r} has no value at version {to_version}")
    old = match[-1]
    value = _open(key, old.value_encrypted, keyring)  # type: ignore[arg-type]
    var, _ = await set_var(
        session,
        actor,
        keyring,
        env_ref,
        key,
        value,
        is_secret=True if old.is_secret else None,  # a secret now stays one (sticky)
        service=service,
        action="revert",
    )
    return var


@dataclass(frozen=True)
class ImportPlan:
    added: list[str]
    changed: list[str]
    unchanged: list[str]
    secret: list[str]


async def import_vars(
    session: AsyncSession,
    actor: Principal,
    keyring: Keyring,
    env_ref: str,
    values: Mapping[str, str],
    *,
    secret_keys: set[str],
    plain_keys: set[str] | None = None,
    service: str | None = None,
    dry_run: bool = False,
) -> ImportPlan:
    """Apply many variables in one transaction (or only report what would change; a preview
    is audited). Secrecy follows `secrecy()`: sticky, plain only for `plain_keys`. A secret is
    reported unchanged only to callers who may reveal it."""
    require(actor, "manage_vars")
    plain_keys = plain_keys or set()
    for key, value in values.items():
        _check_key_value(key, value)
        _check_secrecy(key in secret_keys, key in plain_keys)
    env = await environments.get_environment(session, actor, env_ref)
    scope, svc = await _scope(session, actor, env, service)
    existing = {
        v.key: v
        for v in await session.scalars(
            sa.select(EnvVar).where(
                EnvVar.environment_id == env.id,
                EnvVar.scope == scope,
                EnvVar.deleted_at.is_(None),
            )
        )
    }
    added, changed, unchanged, secret = [], [], [], []
    for key in sorted(values):
        current = existing.get(key)
        is_secret = secrecy(
            current.is_secret if current is not None else None,
            key,
            values[key],
            is_secret=key in secret_keys or None,
            plain=key in plain_keys,
        )
        if is_secret:
            _check_maskable(f"values.{key}", values[key])
            secret.append(key)
        if current is None:
            added.append(key)
        elif _unchanged(actor, current, values[key], is_secret, keyring):
            unchanged.append(key)
        else:
            changed.append(key)
    if dry_run:
        audit.record(
            session,
            actor,
            "var_import_preview",
            "environment",
            env.id,
            {
                "environment": env.name,
                "scope": svc.name if svc else None,
                "variables": sorted(values),
            },
        )
    else:
        register_secrets([values[k] for k in secret])
        for key in [*added, *changed]:
            await _write(
                session,
                actor,
                keyring,
                env,
                svc,
                scope,
                existing.get(key),
                key,
                values[key],
                key in secret,
                "set",
            )
    return ImportPlan(added, changed, unchanged, secret)


# -- requirements and the pre-deployment check ---------------------------------------------------


async def set_requirement(
    session: AsyncSession,
    actor: Principal,
    env_ref: str,
    key: str,
    *,
    required: bool = True,
    rule: str | None = None,
    args: dict[str, Any] | None = None,
) -> VarRequirement:
    """Declare that deployments in the environment need `key` (and its format)."""
    require(actor, "manage_environments")
    _check_key_value(key, None)
    if rule is not None:
        problem = check_args(rule, args or {})
        if problem:
            raise ValidationFailed("rule", problem)
    env = await environments.get_environment(session, actor, env_ref)
    row = await session.scalar(
        sa.select(VarRequirement).where(
            VarRequirement.environment_id == env.id, VarRequirement.key == key
        )
    )
    if row is None:
        row = VarRequirement(environment_id=env.id, key=key)
        session.add(row)
    row.required, row.rule, row.args = required, rule, dict(args or {})
    await session.flush()
    audit.record(
        session,
        actor,
        "requirement_set",
        "environment",
        env.id,
        {"variable": key, "required": required, "rule": rule, "args": args or {}},
    )
    return row


async def list_requirements(
    session: AsyncSession, actor: Principal, env_ref: str
) -> Sequence[VarRequirement]:
    env = await environments.get_environment(session, actor, env_ref)
    return (
        await session.scalars(
            sa.select(VarRequirement)
            .where(VarRequirement.environment_id == env.id)
            .order_by(VarRequirement.key)
        )
    ).all()


async def delete_requirement(
    session: AsyncSession, actor: Principal, env_ref: str, key: str
) -> None:
    require(actor, "manage_environments")
    env = await environments.get_environment(session, actor, env_ref)
    row = await session.scalar(
        sa.select(VarRequirement).where(
            VarRequirement.environment_id == env.id, VarRequirement.key == key
        )
    )
    if row is None:
        raise NotFound(f"no requirement for {key!r} in {env.name}")
    await session.delete(row)
    audit.record(session, actor, "requirement_delete", "environment", env.id, {"variable": key})


async def environment_values(
    session: AsyncSession, environment_ids: Sequence[uuid.UUID], keyring: Keyring
) -> dict[tuple[uuid.UUID, str], str]:
    """The clear values of the environments' own variables (not service overrides), by
    (environment id, key): for resolving the secret references of a pilothouse.yaml (never
    shown)."""
    if not environment_ids:
        return {}
    rows = await session.scalars(
        sa.select(EnvVar).where(
            EnvVar.environment_id.in_(list(environment_ids)),
            EnvVar.scope == "",
            EnvVar.deleted_at.is_(None),
        )
    )
    return {(r.environment_id, r.key): _open(r.key, r.value_encrypted, keyring) for r in rows}


def feature_key(name: str) -> str:
    """The variable a feature flag is delivered as: FEATURE_<NAME> (seed 002)."""
    return "FEATURE_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def feature_variables(env: Environment) -> dict[str, str]:
    """Feature flags as variables: FEATURE_<NAME>=true|false (seed 002)."""
    return {
        feature_key(name): "true" if enabled else "false"
        for name, enabled in sorted((env.features or {}).items())
    }


@dataclass(frozen=True)
class Delivery:
    """What a deployment's processes receive, and what must be scrubbed from their output."""

    values: dict[str, str]
    secrets: list[str]
    problems: list[str]


async def for_deployment(
    session: AsyncSession, keyring: Keyring, env: Environment, service_id: uuid.UUID | None
) -> Delivery:
    """What a service's processes receive, in increasing precedence: the environment's plain
    `config.env`, its feature flags, its variables, the service's variables; and the
    requirement check on them. Deployments and crash restarts both start from this."""
    rows = await _live_rows(session, env.id, str(service_id) if service_id else "")
    config_env = environments.open_config(env, keyring).get("env") or {}
    values = {str(k): str(v) for k, v in config_env.items()}
    values.update(feature_variables(env))
    secrets = [v for k, v in values.items() if v and looks_secret(k, v)]  # sealed in config.env
    problems = []
    for var in rows:
        try:
            plain = _open(var.key, var.value_encrypted, keyring)
        except KeyMissing as exc:
            problems.append(exc.message)
            continue
        values[var.key] = plain
        if var.is_secret and plain:
            secrets.append(plain)
    requirements = [
        Requirement(r.key, r.required, r.rule, r.args)
        for r in await session.scalars(
            sa.select(VarRequirement).where(VarRequirement.environment_id == env.id)
        )
    ]
    # Off the event loop: a regex rule runs with a time limit, but may use it all.
    problems += await asyncio.to_thread(check_all, requirements, values)
    register_secrets(secrets)  # this process now holds them: its logs must never show them
    return Delivery(values, secrets, problems)


@dataclass(frozen=True)
class Pin:
    """One variable a release delivers, by name and version (never its value): `source` is
    `environment` or `service` (a variable: `var_id` and `version` name its env_var_versions
    row), `feature` (a flag: `enabled` is its state) or `config` (the environment's
    `config.env`, not versioned: pinned by name)."""

    key: str
    source: str
    var_id: uuid.UUID | None = None
    version: int | None = None
    is_secret: bool = False
    enabled: bool | None = None


async def current_pins(
    session: AsyncSession, env: Environment, service_id: uuid.UUID | None
) -> list[Pin]:
    """The versions `for_deployment` would deliver now: one pin per key, the winner of the
    precedence (config.env < feature flags < environment variables < service variables)."""
    pins: dict[str, Pin] = {}
    for key in (env.config or {}).get("env") or {}:
        pins[str(key)] = Pin(str(key), "config")
    for name, enabled in sorted((env.features or {}).items()):
        key = feature_key(name)
        pins[key] = Pin(key, "feature", enabled=bool(enabled))
    for var in await _live_rows(session, env.id, str(service_id) if service_id else ""):
        source = "service" if var.scope else "environment"
        pins[var.key] = Pin(var.key, source, var.id, var.version, var.is_secret)
    return [pins[k] for k in sorted(pins)]


async def for_pins(
    session: AsyncSession,
    keyring: Keyring,
    env: Environment,
    pins: Sequence[Pin],
    *,
    check: bool = False,
) -> Delivery:
    """What a release with these pins delivers: each variable's value at its pinned version
    (opened from env_var_versions), each flag in its pinned state, and the pinned `config.env`
    names with the environment's current values (config.env has no versions). With `check`,
    the environment's requirements are checked too (a new release; a rollback returns to
    values that were checked when they went live)."""
    config_env = environments.open_config(env, keyring).get("env") or {}
    wanted = [(p.var_id, p.version) for p in pins if p.var_id is not None]
    sealed: dict[tuple[uuid.UUID, int | None], Any] = {}
    for chunk in range(0, len(wanted), 500):
        ids = [var_id for var_id, _ in wanted[chunk : chunk + 500]]
        rows = await session.execute(
            sa.select(
                EnvVarVersion.var_id, EnvVarVersion.version, EnvVarVersion.value_encrypted
            ).where(EnvVarVersion.var_id.in_(ids))
        )
        for var_id, version, value in rows:
            sealed[(var_id, version)] = value
    values: dict[str, str] = {}
    secrets: list[str] = []
    problems: list[str] = []
    for pin in pins:
        if pin.source == "config":
            if pin.key in config_env:
                values[pin.key] = str(config_env[pin.key])
                if values[pin.key] and looks_secret(pin.key, values[pin.key]):
                    secrets.append(values[pin.key])
        elif pin.source == "feature":
            values[pin.key] = "true" if pin.enabled else "false"
        else:
            value = sealed.get((pin.var_id, pin.version)) if pin.var_id else None
            if value is None:
                problems.append(f"{pin.key}: pinned version {pin.version} has no stored value")
                continue
            try:
                plain = _open(pin.key, value, keyring)
            except KeyMissing as exc:
                problems.append(exc.message)
                continue
            values[pin.key] = plain
            if pin.is_secret and plain:
                secrets.append(plain)
    if check:
        requirements = [
            Requirement(r.key, r.required, r.rule, r.args)
            for r in await session.scalars(
                sa.select(VarRequirement).where(VarRequirement.environment_id == env.id)
            )
        ]
        problems += await asyncio.to_thread(check_all, requirements, values)
    register_secrets(secrets)  # this process now holds them: its logs must never show them
    return Delivery(values, secrets, problems)


REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]{0,254})\}$")


async def dependency_config(
    db: Database, env: Environment, keyring: Keyring | None = None
) -> dict[str, Any]:
    """The environment's config for its dependency probes: credentials opened, and every
    top-level value written as `${NAME}` replaced by the environment's variable NAME (so a
    `database_url` can live in a secret variable instead of the config). An unknown name stays
    as written (the probe then fails, naming it)."""
    try:
        ring = keyring or process_keyring()
    except CryptoError:
        ring = Keyring(current=b"", keys={})
    config = environments.open_config(env, ring)
    wanted = {
        k: m.group(1)
        for k, v in config.items()
        if isinstance(v, str) and (m := REFERENCE.match(v)) is not None
    }
    if not wanted:
        return config
    async with db.session(write=False) as session:
        rows = {r.key: r for r in await _live_rows(session, env.id, "")}
    for field, name in wanted.items():
        if name in rows:
            try:
                config[field] = _open(name, rows[name].value_encrypted, ring)
            except KeyMissing:
                continue
    return config


async def check(
    session: AsyncSession, actor: Principal, keyring: Keyring, env_ref: str, service: str | None
) -> list[str]:
    """`pilothouse vars check`: the problems a deployment would be refused for."""
    env = await environments.get_environment(session, actor, env_ref)
    _, svc = await _scope(session, actor, env, service)
    return (await for_deployment(session, keyring, env, svc.id if svc else None)).problems


async def diff(
    session: AsyncSession, actor: Principal, keyring: Keyring, left: str, right: str
) -> dict[str, list[str]]:
    """Keys only in one environment, and keys whose values differ (never the values). Secrets
    are compared only for callers who may reveal them; for anyone else they are listed under
    `secrets_not_compared`. Every diff is audited."""
    a = await environments.get_environment(session, actor, left)
    b = await environments.get_environment(session, actor, right)
    va = {v.key: v for v in await _live_rows(session, a.id, "")}
    vb = {v.key: v for v in await _live_rows(session, b.id, "")}
    compare_secrets = may(actor, "reveal_secrets")
    differ, not_compared = [], []
    for k in sorted(set(va) & set(vb)):
        if (va[k].is_secret or vb[k].is_secret) and not compare_secrets:
            not_compared.append(k)
        elif _open(k, va[k].value_encrypted, keyring) != _open(k, vb[k].value_encrypted, keyring):
            differ.append(k)
    audit.record(
        session,
        actor,
        "var_diff",
        "environment",
        a.id,
        {"left": a.name, "right": b.name, "compared": "all" if compare_secrets else "plain only"},
    )
    return {
        "only_in_" + a.name: sorted(set(va) - set(vb)),
        "only_in_" + b.name: sorted(set(vb) - set(va)),
        "different": differ,
        "secrets_not_compared": not_compared,
    }


async def reseal_batch(session: AsyncSession, keyring: Keyring, *, batch: int = 500) -> int:
    """Re-encrypt up to `batch` stored values (current and history) still sealed with an older
    key; returns how many. `pilothouse keys rotate` calls it, one transaction per batch, until
    it returns 0."""
    current = keyring.current.hex()
    done = 0
    stale_vars = list(
        await session.scalars(
            sa.select(EnvVar).where(EnvVar.key_id != current).limit(batch).with_for_update()
        )
    )
    for var in stale_vars:
        var.value_encrypted = seal_value(_open(var.key, var.value_encrypted, keyring), keyring)
        var.key_id = current
    done += len(stale_vars)
    if done < batch:
        stale_versions = list(
            await session.scalars(
                sa.select(EnvVarVersion)
                .where(EnvVarVersion.key_id != current, EnvVarVersion.value_encrypted.is_not(None))
                .limit(batch - done)
                .with_for_update()
            )
        )
        for old in stale_versions:
            sealed = str(old.value_encrypted)
            old.value_encrypted = seal_value(
                _open(f"version {old.version}", sealed, keyring), keyring
            )
            old.key_id = current
        done += len(stale_versions)
    return done
