"""The release engine: carries out a claimed deployment through its driver.

pending -> building (optional build command) -> deploying (optional migration command, the
pre-deployment hook point, a rollback with data's restore (deployments/withdata.py), then the
driver's rollout) -> success | failed. A failure with a
previous artifact leads to an automatic rollback deployment (event_type rollback, rollback_from
set); when it succeeds the failed deployment becomes rolled_back. Every step is logged to
deployment_logs and every status change goes through the entities' transition().
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from pydantic import ValidationError

from pilothouse.access import Principal, system_actor
from pilothouse.artifacts.models import Artifact
from pilothouse.config import MASTER_KEY_FILE
from pilothouse.core import redact
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import CryptoError, Keyring, load_keyring
from pilothouse.core.db import Database
from pilothouse.core.leases import WORKER_ID, Leases
from pilothouse.core.logging import get_logger
from pilothouse.core.store import unreachable
from pilothouse.deployments import pins, stopping, withdata
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import ACTIVE_STATUSES, Deployment
from pilothouse.drivers import registry
from pilothouse.drivers.base import (
    Driver,
    Event,
    HookConfig,
    ReplicaInfo,
    RolloutFailed,
    RolloutPlan,
    ServiceSpec,
)
from pilothouse.drivers.command import run_command
from pilothouse.drivers.nginx import NginxRouter
from pilothouse.drivers.process import ProcessDriver
from pilothouse.drivers.transport import NodeAccess, TransportPool, TransportUnavailable
from pilothouse.environments.models import Environment
from pilothouse.nodes import service as nodes
from pilothouse.replicas import service as replicas
from pilothouse.replicas.models import Node, Replica
from pilothouse.services import service as services
from pilothouse.services.models import Service
from pilothouse.services.transitions import TABLE as SERVICE_TABLE
from pilothouse.users.models import User

log = get_logger("pilothouse.engine")

ENGINE = system_actor("engine")
LIVE_REPLICA_STATUSES = ("starting", "running")
MAX_STORED_LINE = 4000  # characters of one stored log line, after scrubbing

#: Pre-deployment hooks (the backups capability registers one): return a backup id or None.
PreDeployHook = Callable[[Deployment, Service], Awaitable[uuid.UUID | None]]
#: Pre-start checks (the findings capability registers its security gate): given a pending
#: deployment, None to let it go on, or (reason, lines) to fail it at pending before anything
#: starts; the lines go to the deployment's log (e.g. every blocking finding).
PreStartCheck = Callable[[Deployment], Awaitable[tuple[str, list[str]] | None]]
#: Event hooks (the alerts capability registers one): told (deployment id, event) after each
#: committed transition; they must return at once (they queue, never send inline).
EventHook = Callable[[uuid.UUID, str], None]
#: Chooses the node of one new replica of a service: (prefer, placed-but-unrecorded per node).
Placer = Callable[[uuid.UUID | None, dict[uuid.UUID, int]], Awaitable[NodeAccess | None]]
#: The notified events of a deployment's statuses (a succeeded rollback is "rolled_back").
NOTIFIED = {"building": "started", "success": "succeeded", "failed": "failed"}


def run_as_of(environment: Environment) -> str | None:
    """The user this environment's replicas and commands run as, when pilothouse is root."""
    value = (environment.config or {}).get("run_as")
    return str(value) if value else None


@dataclass
class Loaded:
    deployment: Deployment
    service: Service
    environment: Environment
    artifact: Artifact
    variables: dict[str, str] = field(default_factory=dict)  # decrypted: never log or store
    secrets: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    pinned: str | None = None  # the config line for the log, when pinned by this load


class DbEvents:
    """Persists what a driver reports: log lines, replicas and their transitions."""

    def __init__(
        self,
        db: Database,
        deployment: Deployment,
        artifact_id: uuid.UUID | None,
        secrets: list[str] | None = None,
    ) -> None:
        self.db = db
        # Values of the secrets this deployment's processes receive: scrubbed from every line
        # (build and migration output, replica output, errors) before it is stored.
        self.secrets = redact.patterns(secrets or [])
        self.deployment_id = deployment.id
        self.service_id = deployment.service_id
        self.artifact_id = artifact_id
        self.node_id: uuid.UUID | None = None  # the node new replicas run on (this host)
        self.placer: Placer | None = None  # set by the engine: where new replicas go
        self._placing = asyncio.Lock()
        self._pending: dict[uuid.UUID, int] = {}  # placed, not yet recorded

    async def place(self, prefer: uuid.UUID | None = None) -> NodeAccess | None:
        """The node of the next new replica (the driver calls it before replica_created): the
        engine's placement, counting the replicas placed by this rollout not recorded yet."""
        if self.placer is None:
            return None
        async with self._placing:
            access = await self.placer(prefer, dict(self._pending))
            if access is not None:
                self._pending[access.id] = self._pending.get(access.id, 0) + 1
            return access

    def clean(self, message: str) -> str:
        """Scrubbed first, then cut: a secret across the cut never leaves its prefix behind."""
        return redact.scrub(message, self.secrets)[:MAX_STORED_LINE]

    async def log(
        self,
        message: str,
        *,
        level: str = "info",
        source: str = "deploy",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        async with self.db.session() as session:
            await deployments.write_logs(
                session,
                self.deployment_id,
                [
                    {
                        "message": self.clean(message),
                        "level": level,
                        "source": source,
                        "metadata": metadata,
                    }
                ],
            )

    async def log_many(self, messages: list[str], *, source: str) -> None:
        """Many lines in one transaction (a replica's output arrives in chunks)."""
        if not messages:
            return
        async with self.db.session() as session:
            await deployments.write_logs(
                session,
                self.deployment_id,
                [{"message": self.clean(m), "level": "info", "source": source} for m in messages],
            )

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        async with self.db.session() as session:
            replica = await replicas.create_replica(
                session,
                self.service_id,
                actor=ENGINE,
                deployment_id=self.deployment_id,
                artifact_id=self.artifact_id,
                version=version,
                ports={"http": port} if port else {},
                log_path=log_path,
                node_id=node_id or self.node_id,
            )
        # Counted as placed until its row is committed: a placement in between sees it either
        # way (in the pending counts or in the store), never in neither.
        if node_id is not None and self._pending.get(node_id):
            self._pending[node_id] -= 1
        return replica.id

    async def replica_changed(
        self, replica_id: uuid.UUID, to: str, *, reason: str | None = None, **fields: Any
    ) -> None:
        await record_replica(self.db, replica_id, to, reason=reason, **fields)


async def record_replica(
    db: Database, replica_id: uuid.UUID, to: str, *, reason: str | None = None, **fields: Any
) -> None:
    """Persist what a driver reports about a replica: its fields, then its transition."""
    async with db.session() as session:
        replica = await session.get(Replica, replica_id, with_for_update=True)
        if replica is None:
            return
        for key, value in fields.items():
            setattr(replica, key, value)
        if to != replica.status:
            await replicas.transition(session, replica, to, actor=ENGINE, reason=reason)


def _access(node: Node, keyring: Keyring) -> NodeAccess:
    """How the drivers reach the node; a remote node whose key cannot be opened here is still
    remote (its transport then fails as unavailable: never mistaken for this host)."""
    try:
        return nodes.access_of(node, keyring)
    except (TransportUnavailable, CryptoError, ValueError):
        return NodeAccess(node.id, node.name, "ssh", node.address or node.hostname)


def replica_info(replica: Replica) -> ReplicaInfo:
    port = (replica.ports or {}).get("http")
    return ReplicaInfo(
        id=replica.id,
        version=replica.version,
        pid=replica.pid,
        process_started_at=replica.process_started_at,
        port=int(port) if port else None,
        log_path=replica.log_path,
        status=replica.status,
        container_id=replica.container_id,
        node_id=replica.node_id,
    )


def service_spec(
    service: Service,
    environment: Environment,
    *,
    version: str,
    commit_sha: str | None,
    variables: dict[str, str],
    secrets: list[str],
    event: Event,
    artifact: Artifact | None = None,
    release_id: uuid.UUID | None = None,
) -> ServiceSpec:
    """What a driver is told about a service and the release it runs (rollouts and restarts)."""
    return ServiceSpec(
        service_id=service.id,
        service_name=service.name,
        environment_name=environment.name,
        command=service.command,
        image=(artifact.image_uri if artifact is not None else None) or service.image,
        version=version,
        commit_sha=commit_sha,
        target_replicas=service.target_replicas,
        env=dict(variables),
        config=dict(service.driver_config or {}),
        health_check=dict(service.health_check or {}),
        secrets=list(secrets),
        event=event,
        run_as=run_as_of(environment),
        memory_mb=service.memory_mb,
        cpu_cores=service.cpu_cores,
        gpu_units=service.gpu_units,
        storage_gb=service.storage_gb,
        image_digest=artifact.image_digest if artifact is not None else None,
        release_id=release_id,
    )


class Engine:
    """Runs deployments for one worker; holds the drivers and the hook points."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        *,
        worker_id: str = WORKER_ID,
        lease_seconds: float = 15.0,
        master_key: str | None = None,
        pre_deploy_hooks: list[PreDeployHook] | None = None,
        data_restore_hooks: list[withdata.DataRestoreHook] | None = None,
        pre_start_checks: list[PreStartCheck] | None = None,
        node_name: str = nodes.LOCAL,
        container_engine: str = "podman",
        container_runtime: str | None = "runc",
        transports: TransportPool | None = None,
    ) -> None:
        self.db = db
        self.node_name = node_name
        self.data_dir = data_dir
        self.master_key = master_key
        self.leases = Leases(db, owner=worker_id, seconds=lease_seconds)
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.router = NginxRouter(data_dir / "nginx")
        # How drivers reach every node (one connection per host); tests inject a factory.
        self.transports = transports if transports is not None else TransportPool()
        self.drivers: dict[str, Driver] = registry.create_all(
            registry.DriverContext(
                data_dir,
                self.router,
                container_engine=container_engine,
                container_runtime=container_runtime,
                transports=self.transports,
            )
        )
        self.pre_deploy_hooks: list[PreDeployHook] = (
            pre_deploy_hooks if pre_deploy_hooks is not None else []
        )
        self.event_hooks: list[EventHook] = []
        self.pre_start_checks = pre_start_checks if pre_start_checks is not None else []
        # rollback --with-data (deployments/withdata.py); the backups capability registers one
        self.data_restore_hooks = data_restore_hooks if data_restore_hooks is not None else []
        self.active: set[uuid.UUID] = set()  # deployments this engine is carrying out now
        self.lost: dict[uuid.UUID, str] = {}  # stopped because the store went away: why

    async def close(self) -> None:
        """Let go of the drivers' relays and listing channels, then of every connection to
        another node (the worker stops; replicas go on running)."""
        for driver in self.drivers.values():
            if isinstance(driver, ProcessDriver):  # the container driver is one too
                await driver.close()
        await self.transports.close()

    # -- leases -----------------------------------------------------------------------------

    async def claim(self, deployment_id: uuid.UUID) -> bool:
        """Take a pending deployment for this worker; False if another worker has it."""
        return await self.leases.claim(Deployment, deployment_id, Deployment.status == "pending")

    # -- helpers ----------------------------------------------------------------------------

    async def _pin(self, deployment_id: uuid.UUID) -> str | None:
        """Pin the config this deployment delivers, once (deployments/pins.py)."""
        async with self.db.session() as session:
            dep = await session.get(Deployment, deployment_id, with_for_update=True)
            assert dep is not None
            if dep.config_pinned_at is not None:
                return None
            svc = await session.get(Service, dep.service_id)
            env = await session.get(Environment, dep.environment_id)
            assert svc is not None and env is not None
            return await pins.pin_deployment(session, dep, svc, env)

    async def _load(self, deployment_id: uuid.UUID) -> Loaded:
        pinned = await self._pin(deployment_id)
        async with self.db.session(write=False) as session:
            dep = await session.get(Deployment, deployment_id)
            assert dep is not None
            svc = await session.get(Service, dep.service_id)
            env = await session.get(Environment, dep.environment_id)
            art = await session.get(Artifact, dep.artifact_id) if dep.artifact_id else None
            assert svc is not None and env is not None and art is not None
            delivery = await pins.delivery(session, self.keyring(), env, svc.id, dep.id)
            return Loaded(
                dep, svc, env, art, delivery.values, delivery.secrets, delivery.problems, pinned
            )

    def keyring(self) -> Keyring:
        """The master keyring; an empty one when there is none (every sealed value then fails
        with a message naming its variable and key id)."""
        try:
            return load_keyring(self.master_key, self.data_dir / MASTER_KEY_FILE)
        except CryptoError:
            return Keyring(current=b"", keys={})

    async def _move(
        self, deployment_id: uuid.UUID, to: str, *, reason: str | None = None, **outcome: Any
    ) -> Deployment:
        async with self.db.session() as session:
            dep = await session.get(Deployment, deployment_id, with_for_update=True)
            assert dep is not None
            await deployments.transition(session, dep, to, actor=ENGINE, reason=reason, **outcome)
        rolled_back = to == "success" and dep.event_type == "rollback"
        self._emit(dep.id, "rolled_back" if rolled_back else NOTIFIED.get(to))
        return dep

    def _emit(self, deployment_id: uuid.UUID, event: str | None) -> None:
        """Tell the event hooks (notifications) after a committed transition; never fails."""
        for hook in self.event_hooks if event else []:
            try:
                hook(deployment_id, str(event))
            except Exception as exc:
                log.warning("deployment event hook failed", reason=type(exc).__name__)

    async def _service_status(self, service_id: uuid.UUID, to: str, reason: str) -> None:
        async with self.db.session() as session:
            svc = await session.get(Service, service_id, with_for_update=True)
            if svc is None or svc.status == to or svc.deleted_at is not None:
                return
            if to in SERVICE_TABLE.get(svc.status, frozenset()):
                await services.transition(session, svc, to, actor=ENGINE, reason=reason)

    async def _current_replicas(self, service_id: uuid.UUID) -> list[ReplicaInfo]:
        async with self.db.session(write=False) as session:
            rows = await session.scalars(
                sa.select(Replica)
                .where(Replica.service_id == service_id, Replica.status.in_(LIVE_REPLICA_STATUSES))
                .order_by(Replica.created_at)
            )
            return [replica_info(r) for r in rows]

    # -- nodes ------------------------------------------------------------------------------

    async def refresh_nodes(self) -> None:
        """Tell the drivers how to reach every node now (the supervisor calls it every tick)."""
        keyring = self.keyring()
        async with self.db.session(write=False) as session:
            rows = (await session.scalars(sa.select(Node))).all()
            for node in rows:
                self.transports.remember(_access(node, keyring))

    def backend(self, replica: Replica) -> str | None:
        """Where the router reaches a replica: "host:port" (its node's address when the node
        is reached through a transport, else this host)."""
        port = (replica.ports or {}).get("http")
        if not port:
            return None
        access = self.transports.remote(replica.node_id)
        return f"{access.address if access is not None else '127.0.0.1'}:{int(port)}"

    async def place(
        self,
        service_id: uuid.UUID,
        deployment_id: uuid.UUID | None,
        prefer: uuid.UUID | None,
        pending: dict[uuid.UUID, int],
    ) -> NodeAccess | None:
        """The node of one new replica of the service (nodes.choose_node decides); None when
        the service is not placed and no node is registered. RolloutFailed names the shortfall."""
        async with self.db.session(write=False) as session:
            svc = await session.get(Service, service_id)
            assert svc is not None
            env = await session.get(Environment, svc.environment_id)
            assert env is not None
            chosen = await nodes.choose_node(
                session,
                svc,
                env,
                deployment_id=deployment_id,
                prefer=prefer,
                pending=pending,
                local_name=self.node_name,
            )
            if chosen.shortfall is not None:
                raise RolloutFailed(f"{svc.name} does not fit: {chosen.shortfall}")
            if chosen.node is None:
                return None
            access = _access(chosen.node, self.keyring())
        self.transports.remember(access)
        return access

    def driver_for(self, environment: Environment) -> Driver:
        """The environment's driver; an unknown name fails the deployment (never a fallback)."""
        driver = self.drivers.get(environment.driver)
        if driver is None:
            raise RolloutFailed(str(registry.UnknownDriver(environment.driver)))
        return driver

    def spec(self, loaded: Loaded, *, event: Event = "deploy") -> ServiceSpec:
        return service_spec(
            loaded.service,
            loaded.environment,
            version=loaded.artifact.version,
            commit_sha=loaded.artifact.commit_sha,
            variables=loaded.variables,
            secrets=loaded.secrets,
            event=event,
            artifact=loaded.artifact,
            release_id=loaded.deployment.id,
        )

    # -- carrying out -----------------------------------------------------------------------

    async def run(self, deployment_id: uuid.UUID) -> str:
        """Carry out a claimed deployment to its outcome; returns the final status."""
        self.active.add(deployment_id)
        try:
            async with self.leases.held(Deployment, deployment_id):
                return await self._run(deployment_id)
        finally:
            self.active.discard(deployment_id)

    async def _run(self, deployment_id: uuid.UUID) -> str:
        loaded = await self._load(deployment_id)
        dep, svc = loaded.deployment, loaded.service
        events = DbEvents(self.db, dep, loaded.artifact.id, loaded.secrets)
        if loaded.pinned:
            await events.log(loaded.pinned)
        await self.refresh_nodes()  # the drivers reach replicas on other nodes through these
        if dep.event_type == "stop":
            return await stopping.carry_out_stop(self, loaded, events)
        if loaded.problems:
            # Refused before anything starts: nothing changed, so there is nothing to roll back.
            reason = "environment variables: " + "; ".join(loaded.problems)
            await events.log(f"deployment refused: {reason}", level="error")
            await self._move(dep.id, "failed", reason="variables", error_message=reason[:4000])
            return "failed"
        for check in self.pre_start_checks:  # refused before anything starts, like the above
            refusal = await check(dep)
            if refusal is not None:
                reason, lines = refusal
                await events.log(f"deployment refused: {reason}", level="error")
                await events.log_many(lines, source="deploy")
                await self._move(dep.id, "failed", reason="pre-start check", error_message=reason)
                return "failed"
        conflict = await self._router_conflict(loaded)
        if conflict is not None:  # refused before anything starts, like the variables above
            await events.log(f"deployment refused: {conflict}", level="error")
            await self._move(dep.id, "failed", reason="router port", error_message=conflict)
            return "failed"
        async with self.db.session(
            write=False
        ) as session:  # capacity again: others may have taken it
            short = await nodes.preflight(
                session,
                svc,
                loaded.environment,
                version=loaded.artifact.version,
                event_type=dep.event_type,
            )
            events.node_id = await nodes.local_node_id(session, self.node_name)
        events.placer = functools.partial(self.place, svc.id, dep.id)
        if short is not None:
            reason = f"{svc.name} does not fit: {short} (nothing was started or stopped)"
            await events.log(f"deployment refused: {reason}", level="error")
            await self._move(dep.id, "failed", reason="capacity", error_message=reason)
            return "failed"
        weak = sum(1 for secret in loaded.secrets if redact.unmaskable(secret))
        if weak:
            # stored before the masking rule: they cannot be masked, say so rather than leak
            await events.log(
                f"{weak} secret variable(s) are too short to be masked in output; "
                "set longer values (docs/security.md)",
                level="warn",
            )
        try:
            driver = self.driver_for(loaded.environment)
        except RolloutFailed as exc:
            await events.log(f"deployment refused: {exc.reason}", level="error")
            await self._move(dep.id, "failed", reason="driver", error_message=exc.reason)
            return "failed"
        started = time.monotonic()
        await self._move(dep.id, "building", reason=f"{driver.name} driver")
        await self._service_status(svc.id, "scheduled", f"deployment {dep.id}")
        await events.log(
            f"{dep.event_type} of {svc.name} {dep.version} by {dep.operator} "
            f"({driver.name} driver, {svc.target_replicas} replica(s))"
        )
        try:
            config = self._config(loaded, driver)
            # A rollback, a scale or a service start returns to (or keeps) an artifact that
            # was built and migrated for before.
            forward = dep.event_type not in ("rollback", "scale", "start")
            if not forward and (config.build_command or config.migration_command):
                await events.log(f"{dep.event_type}: skipping the build and migration commands")
            if forward and config.build_command:
                await self._command(
                    events, config.build_command, "build", config.build_timeout, loaded
                )
            build_ms = int((time.monotonic() - started) * 1000)
            await self._move(dep.id, "deploying", build_time_ms=build_ms)
            # Before migrations: the backup must hold the data as it was (not for a rollback
            # or a scale, which change no schema).
            for hook in self.pre_deploy_hooks if forward else []:
                backup_id = await hook(dep, svc)
                if backup_id is not None:
                    async with self.db.session() as session:
                        row = await session.get(Deployment, dep.id)
                        assert row is not None
                        row.backup_created, row.backup_id = True, backup_id
                    await events.log(f"pre-deployment backup {backup_id}")
            if dep.restore_backup_ids:  # a rollback with data: the data goes back first
                await withdata.restore_before_rollout(
                    self.db, dep, self.data_restore_hooks, events.log, actor=ENGINE
                )
            if forward and config.migration_command:
                result = await self._command(
                    events, config.migration_command, "migration", config.migration_timeout, loaded
                )
                async with self.db.session() as session:
                    row = await session.get(Deployment, dep.id)
                    assert row is not None
                    row.migration_applied = True
                    row.migration_version = events.clean(result or "")[:200] or None
            deploy_started = time.monotonic()
            plan = RolloutPlan(
                spec=self.spec(loaded, event=cast(Event, dep.event_type)),
                current=await self._current_replicas(svc.id),
                deployment_id=dep.id,
            )
            carry_out = driver.scale if dep.event_type == "scale" else driver.rollout
            outcome = await carry_out(plan, events)
        except RolloutFailed as exc:
            return await self._fail(loaded, events, exc.reason)
        except Exception as exc:  # a bug or an outage must not leave the deployment deploying
            if (lost := unreachable(exc)) is not None:
                return await self._store_lost(dep.id, lost)
            log.error("deployment crashed", deployment=str(dep.id), exc_info=exc)
            return await self._fail(loaded, events, f"internal error: {type(exc).__name__}: {exc}")
        deploy_ms = int((time.monotonic() - deploy_started) * 1000)
        await events.log(
            f"{svc.name} {dep.version} is live on {outcome.instances} replica(s) "
            f"in {time.monotonic() - started:.1f}s"
        )
        await self._move(
            dep.id,
            "success",
            reason="all replicas ready",
            deploy_time_ms=deploy_ms,
            instances_deployed=outcome.instances,
            health_check_passed=True,
        )
        await self._service_status(svc.id, "running", f"deployment {dep.id} succeeded")
        if dep.event_type == "rollback" and dep.rollback_from:
            await self._mark_rolled_back(dep.rollback_from, f"rolled back by {dep.id}")
        if outcome.cleanup is not None:
            # Traffic is already on the new replicas; the old ones finish draining and stop.
            await outcome.cleanup
            await events.log("old replicas stopped")
        return "success"

    async def _router_conflict(self, loaded: Loaded) -> str | None:
        """The router port re-checked before a rollout (issue 12.2): another live service's
        (any environment), or held on this host by anything but this service's router."""
        svc = loaded.service
        port = services.router_port(svc.driver_config)
        if port is None or not registry.routes(loaded.environment.driver):
            return None
        async with self.db.session(write=False) as session:
            other = await services.router_port_user(session, port, exclude=svc.id)
            if other is not None:
                owner = await session.get(User, loaded.deployment.owner_id)
                reader = Principal(owner.id, owner.name, owner.role) if owner else ENGINE
                who = await services.describe_port_user(session, reader, other)
                return f"router port {port} is already used by {who}"
        holder = self.router.port_holder(str(svc.id), port)
        return None if holder is None else f"router port {port} is in use on this host by {holder}"

    async def _store_lost(self, deployment_id: uuid.UUID, reason: str) -> str:
        """The store went away mid-rollout, so what the rollout did since is not recorded: it
        stops here. Once the store answers again, the lease is handed to reconciliation at once,
        which fails the deployment naming the store and restores the service."""
        log.warning("rollout stopped: the store is unreachable", deployment=str(deployment_id))
        self.lost[deployment_id] = reason
        while await self.db.ping() is not None:
            await asyncio.sleep(1.0)
        await self.leases.hand_over(Deployment, deployment_id)
        return "interrupted"

    def _interruption(self, deployment_id: uuid.UUID, expired_at: datetime) -> tuple[str, str]:
        """(log line, failure reason) for a deployment whose lease ran out: the store going
        away when it did, else the worker's death."""
        lost = self.lost.pop(deployment_id, None)
        if lost is not None:
            return (
                f"the store became unreachable during the rollout ({lost}); reconciling",
                f"interrupted: the store was unreachable ({lost})",
            )
        window = timedelta(seconds=self.lease_seconds)
        outage = self.db.health.outage_between(expired_at - window, expired_at)
        if outage is not None:
            return (
                f"the store was unreachable {outage.describe()}, so the lease of this "
                "deployment could not be renewed; reconciling",
                f"interrupted: the store was unreachable ({outage.reason})",
            )
        return "the worker carrying this deployment died; reconciling", "interrupted"

    def _config(self, loaded: Loaded, driver: Driver) -> HookConfig:
        """The service's driver_config, validated by its driver's model (422-style reason)."""
        try:
            return driver.config_model(**dict(loaded.service.driver_config or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise RolloutFailed(f"driver_config.{field}: {first['msg']}") from None

    async def _command(
        self, events: DbEvents, command: str, source: str, timeout: float, loaded: Loaded
    ) -> str:
        await events.log(f"running {source} command", source=source)
        env = {
            "PILOTHOUSE_SERVICE": loaded.service.name,
            "PILOTHOUSE_VERSION": loaded.artifact.version,
            "PILOTHOUSE_COMMIT_SHA": loaded.artifact.commit_sha,
            "PILOTHOUSE_ENVIRONMENT": loaded.environment.name,
            **loaded.variables,
        }
        cwd = (loaded.service.driver_config or {}).get("cwd")
        result = await run_command(
            command,
            env=env,
            timeout=timeout,
            events=events,
            source=source,
            cwd=cwd,
            run_as=run_as_of(loaded.environment),
        )
        if result.timed_out:
            raise RolloutFailed(f"{source} command timed out after {timeout:g}s")
        if result.exit_code != 0:
            raise RolloutFailed(f"{source} command exited with status {result.exit_code}")
        return result.last_line

    async def _fail(self, loaded: Loaded, events: DbEvents, reason: str) -> str:
        """Mark the deployment failed and, in the same transaction, record the automatic
        rollback (if there is a live artifact to go back to); then carry the rollback out."""
        dep, svc = loaded.deployment, loaded.service
        reason = redact.scrub(reason, redact.patterns(loaded.secrets))
        await events.log(f"deployment failed: {reason}", level="error")
        rollback_id: uuid.UUID | None = None
        previous_version: str | None = None
        async with self.db.session() as session:
            current = await session.get(Deployment, dep.id, with_for_update=True)
            assert current is not None
            failing = current.status in ACTIVE_STATUSES
            if failing:
                await deployments.transition(
                    session,
                    current,
                    "failed",
                    actor=ENGINE,
                    reason=reason,
                    error_message=reason,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            rollback = await deployments.record_automatic_rollback(
                session,
                ENGINE,
                current,
                service_name=svc.name,
                reason=reason,
                lease_owner=self.worker_id,
                lease_expires_at=utcnow() + timedelta(seconds=self.lease_seconds),
            )
            if rollback is not None:
                rollback_id, previous_version = rollback.id, rollback.version
        self._emit(dep.id, "failed" if failing else None)
        live = await self._current_replicas(svc.id)
        if live:
            await self._service_status(svc.id, "running", reason)
        else:
            await self._service_status(
                svc.id, "failed", f"deployment of {dep.version} failed: {reason}; nothing is live"
            )
        if rollback_id is not None:
            await events.log(
                f"automatic rollback to {previous_version}: deployment {rollback_id}", level="warn"
            )
            await self.run(rollback_id)
        return "failed"

    async def _mark_rolled_back(self, deployment_id: uuid.UUID, reason: str) -> None:
        async with self.db.session() as session:
            target = await session.get(Deployment, deployment_id, with_for_update=True)
            if target is not None and target.status in ("success", "failed"):
                await deployments.transition(
                    session,
                    target,
                    "rolled_back",
                    actor=ENGINE,
                    reason=reason,
                    rollback_reason=reason,
                )

    # -- reconciliation ---------------------------------------------------------------------

    async def reconcile_interrupted(self) -> list[uuid.UUID]:
        """Deployments whose worker died (lease expired) become failed ("interrupted") and their
        service is brought back to its live artifact by an automatic rollback."""
        rows = await self.leases.expired_leases(Deployment, Deployment.status.in_(ACTIVE_STATUSES))
        done = []
        if rows:
            await self.refresh_nodes()
        for dep_id, owner, expired_at in rows:
            if dep_id in self.active:
                continue  # carried out here: its heartbeat renews the lease
            if owner != self.worker_id and self.db.health.recovered_within(self.lease_seconds):
                continue  # expired while the store was away: its owner gets a lease to renew it
            if not await self.leases.reclaim(Deployment, dep_id):
                continue
            loaded = await self._load(dep_id)
            events = DbEvents(self.db, loaded.deployment, loaded.artifact.id)
            cause, reason = self._interruption(dep_id, expired_at)
            await events.log(cause, level="warn")
            await self._cleanup_dead_replicas(loaded.service.id, loaded.environment)
            if loaded.deployment.previous_artifact_id is None:
                # Nothing to go back to: stop what the interrupted rollout started before the
                # outcome is recorded, so the service is never `running` on replicas that are
                # being stopped; with none left, _fail marks it `failed`.
                stale = await self._current_replicas(loaded.service.id)
                await self.driver_for(loaded.environment).stop(stale, events)
            await self._fail(loaded, events, reason)
            done.append(dep_id)
        return done

    async def _cleanup_dead_replicas(self, service_id: uuid.UUID, env: Environment) -> None:
        driver = self.drivers.get(env.driver)
        async with self.db.session() as session:
            rows = await session.scalars(
                sa.select(Replica).where(
                    Replica.service_id == service_id,
                    Replica.status.in_(("pending", "starting", "stopping")),
                )
            )
            for replica in rows:
                if driver is None or not driver.alive(replica_info(replica)):
                    to = "stopped" if replica.status == "stopping" else "failed"
                    replica.keep_running = False
                    await replicas.transition(
                        session, replica, to, actor=ENGINE, reason="interrupted"
                    )
