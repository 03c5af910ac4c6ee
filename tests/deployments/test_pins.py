"""Pinned config through the service functions, on both stores (deployments/pins.py): what a
release pins, what it delivers after the variables change, what a rollback copies, and the
diff between two releases."""

from __future__ import annotations

from pathlib import Path

from pilothouse.access import Principal
from pilothouse.artifacts import service as artifacts
from pilothouse.core.crypto import Keyring, load_keyring
from pilothouse.core.db import Database
from pilothouse.deployments import pins
from pilothouse.deployments import service as deployments
from pilothouse.deployments.models import Deployment
from pilothouse.environments import service as environments
from pilothouse.environments.models import Environment
from pilothouse.services import service as services
from pilothouse.services.models import Service
from pilothouse.setup import ensure_master_key
from pilothouse.variables import service as variables

SECRET_1, SECRET_2 = "sntl-PINS-aaaa-1111", "sntl-PINS-bbbb-2222"


def ring(tmp_path: Path) -> Keyring:
    ensure_master_key(tmp_path / "master.key")
    return load_keyring(None, tmp_path / "master.key")


async def go_live(session: object, dep: Deployment, admin: Principal) -> None:
    for to in ("building", "deploying", "success"):
        await deployments.transition(session, dep, to, actor=admin)  # type: ignore[arg-type]


async def test_pins_deliver_the_pinned_versions_and_diff_names_them(
    db: Database, admin: Principal, tmp_path: Path
) -> None:
    keys = ring(tmp_path)
    async with db.session() as session:
        await environments.create_environment(
            session,
            admin,
            name="e",
            type="staging",
            features={"beta": True},
            config={"env": {"CFG": "from-config"}},
        )
        await services.create_service(
            session, admin, environment="e", name="s", resources={}, command="run {port}"
        )
        for version in ("v1.0.0", "v2.0.0"):
            await artifacts.register_artifact(
                session, admin, service="s", environment="e", version=version, commit_sha="a" * 40
            )
        await variables.set_var(session, admin, keys, "e", "X", "1")
        await variables.set_var(session, admin, keys, "e", "GONE", "soon", plain=True)
        await variables.set_var(session, admin, keys, "e", "API_SECRET", SECRET_1, service="s")
        d1 = await deployments.create_deployment(session, admin, service="s", version="v1.0.0")
        svc = await session.get(Service, d1.service_id)
        env = await session.get(Environment, d1.environment_id)
        assert svc is not None and env is not None
        said = await pins.pin_deployment(session, d1, svc, env)
        assert said == "config: 5 variable version(s) pinned as of now"
        assert await pins.pin_deployment(session, d1, svc, env) is None  # once
        await go_live(session, d1, admin)

        # today's values move on
        await variables.set_var(session, admin, keys, "e", "X", "2")
        await variables.unset_var(session, admin, "e", "GONE")
        await variables.set_var(session, admin, keys, "e", "API_SECRET", SECRET_2, service="s")
        await variables.set_var(session, admin, keys, "e", "NEW", "n", plain=True)
        await environments.update_environment(session, admin, "e", {"features": {"beta": False}})

    async with db.session() as session:
        env = await session.get(Environment, d1.environment_id)
        assert env is not None
        delivered = await pins.delivery(session, keys, env, d1.service_id, d1.id)
        assert delivered.values == {
            "API_SECRET": SECRET_1,
            "CFG": "from-config",
            "FEATURE_BETA": "true",
            "GONE": "soon",
            "X": "1",
        }
        assert delivered.secrets == [SECRET_1] and delivered.problems == []
        # a replica that names no release (or one recorded before pinning): today's values
        today = await pins.delivery(session, keys, env, d1.service_id, None)
        assert today.values["X"] == "2" and "GONE" not in today.values

        # a new release (a restart) pins today's versions; a requirement added since is checked
        await variables.set_requirement(session, admin, "e", "MISSING")
        d2 = await deployments.create_deployment(
            session, admin, service="s", version="v1.0.0", event_type="restart"
        )
        svc = await session.get(Service, d2.service_id)
        assert svc is not None and d2.config_from is None
        await pins.pin_deployment(session, d2, svc, env)
        new = await pins.delivery(session, keys, env, d2.service_id, d2.id)
        assert new.values["X"] == "2" and new.values["FEATURE_BETA"] == "false"
        assert new.problems == ["MISSING: is required"]
        await go_live(session, d2, admin)

        diff = await pins.diff_releases(session, admin, str(d1.id)[:8], str(d2.id))
        assert [(c.key, c.change, c.version_from, c.version_to) for c in diff.variables] == [
            ("API_SECRET", "changed", "v1", "v2"),
            ("FEATURE_BETA", "changed", "on", "off"),
            ("GONE", "removed", "v1", None),
            ("NEW", "added", None, "v1"),
            ("X", "changed", "v1", "v2"),
        ]
        assert diff.settings == [] and diff.notes == []
        assert SECRET_1 not in repr(diff) and SECRET_2 not in repr(diff)

        # deploy v2, then roll back: the rollback copies the pins of v1's last live release
        d3 = await deployments.create_deployment(session, admin, service="s", version="v2.0.0")
        await pins.pin_deployment(session, d3, svc, env)
        await go_live(session, d3, admin)
        back = await deployments.create_rollback(session, admin, "s", environment="e")
        assert back.config_from == d2.id
        said = await pins.pin_deployment(session, back, svc, env)
        assert said == f"config: the 5 variable version(s) pinned by release {d2.id} (v1.0.0)"
        rolled = await pins.delivery(session, keys, env, back.service_id, back.id)
        # copied pins were checked when they went live: a new requirement does not stop it
        assert rolled.values == new.values and rolled.problems == []


async def test_a_release_without_pins_is_named_in_the_diff(db: Database, admin: Principal) -> None:
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e", type="staging")
        await services.create_service(
            session, admin, environment="e", name="s", resources={}, command="run {port}"
        )
        await artifacts.register_artifact(
            session, admin, service="s", environment="e", version="v1.0.0", commit_sha="b" * 40
        )
        d1 = await deployments.create_deployment(session, admin, service="s", version="v1.0.0")
        view = await pins.config_of(session, admin, str(d1.id)[:6])
        assert not view.pinned and view.pins == []
        diff = await pins.diff_releases(session, admin, str(d1.id), str(d1.id))
        assert diff.variables == [] and len(diff.notes) == 2
        assert "has no pinned config" in diff.notes[0]


async def test_a_password_inside_a_driver_setting_is_never_stored_or_shown(
    db: Database, admin: Principal
) -> None:
    password = "sntl-PINS-hunter2"
    command = f"DATABASE_URL=postgres://app:{password}@db/app alembic upgrade head"
    async with db.session() as session:
        await environments.create_environment(session, admin, name="e", type="staging")
        await services.create_service(
            session,
            admin,
            environment="e",
            name="s",
            resources={},
            command="run {port}",
            driver_config={"migrate_command": command},
        )
        await artifacts.register_artifact(
            session, admin, service="s", environment="e", version="v1.0.0", commit_sha="c" * 40
        )
        d1 = await deployments.create_deployment(session, admin, service="s", version="v1.0.0")
        svc = await session.get(Service, d1.service_id)
        env = await session.get(Environment, d1.environment_id)
        assert svc is not None and env is not None
        await pins.pin_deployment(session, d1, svc, env)
        view = await pins.config_of(session, admin, str(d1.id))
        assert view.driver_settings is not None
        assert view.driver_settings["config"]["migrate_command"] == (
            "DATABASE_URL=postgres://app:***@db/app alembic upgrade head"
        )
        await go_live(session, d1, admin)
        await services.update_service(session, admin, "s", {"driver_config": {}})
        d2 = await deployments.create_deployment(
            session, admin, service="s", version="v1.0.0", event_type="restart"
        )
        await pins.pin_deployment(session, d2, svc, env)
        diff = await pins.diff_releases(session, admin, str(d1.id), str(d2.id))
        assert [(c.key, c.change) for c in diff.settings] == [
            ("driver_config.migrate_command", "removed")
        ]
        assert password not in repr(diff) and password not in repr(view)
