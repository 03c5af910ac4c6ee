"""The container driver against a stand-in engine (a script that records what it is asked):
variables reach the engine only through a private env-file that is gone after the start, never
on the command line; container output goes through the scrubbing relay; a digest mismatch is
refused before anything runs. The real engine is tested in tests/containers/."""

from __future__ import annotations

import asyncio
import json
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pilothouse.drivers.base import ReplicaInfo, RolloutFailed, ServiceSpec
from pilothouse.drivers.container import ContainerConfig, ContainerDriver
from pilothouse.drivers.transport import LocalTransport, NodeAccess, TransportPool

SECRET = "s3cret-Value-8472"
HEX = "ab" * 32

ENGINE = r"""#!/usr/bin/env python3
import json, os, stat, sys
log = os.environ["FAKE_ENGINE_LOG"]
args = sys.argv[1:]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\n")
if args[:1] == ["--runtime"]:  # podman's global option (a command for another node)
    args = args[2:]
if args[:2] == ["image", "inspect"]:
    print(json.dumps([{"Id": "@HEX@", "RepoDigests": []}]))
elif args[0] == "run":
    path = args[args.index("--env-file") + 1]
    mode = stat.S_IMODE(os.stat(path).st_mode)
    with open(log + ".envfile", "w") as f:
        f.write(json.dumps({"mode": mode, "text": open(path).read()}))
    if os.environ.get("FAKE_RUN_SECONDS"):  # a slow `run`: its end is recorded too
        import time
        time.sleep(float(os.environ["FAKE_RUN_SECONDS"]))
        with open(log, "a") as f:
            f.write(json.dumps(["run done"]) + "\n")
    print("c" * 64)
elif args[:2] == ["container", "inspect"]:
    print(json.dumps([{"Id": "c" * 64, "State": {"Running": True, "Pid": os.getppid()},
                       "Config": {"Labels": {}}, "NetworkSettings": {"Ports": {"8000/tcp": [
                           {"HostIp": "127.0.0.9", "HostPort": "41999"}]}}}]))
elif args[0] == "logs":
    print("starting with token @SECRET@", flush=True)
elif args[0] == "stats":
    print("c" * 12 + "\t12.5%\t10MB / 512MB")
elif args[0] == "ps":
    print(os.environ.get("FAKE_PS", ""))
""".replace("@HEX@", HEX).replace("@SECRET@", SECRET)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "bin" / "podman"  # named like the engine it stands in for
    script.parent.mkdir()
    script.write_text(ENGINE)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_ENGINE_LOG", str(tmp_path / "calls.log"))
    return script


def spec(digest: str | None = f"sha256:{HEX}") -> ServiceSpec:
    return ServiceSpec(
        service_id=uuid.uuid4(),
        service_name="web",
        environment_name="e",
        command=None,
        image="localhost/app:1",
        version="v1",
        commit_sha=None,
        target_replicas=1,
        env={"API_TOKEN": SECRET, "MODE": "x y"},
        secrets=[SECRET],
        memory_mb=512,
        cpu_cores=0.5,
        image_digest=digest,
    )


async def test_variables_go_through_a_private_env_file_and_output_is_scrubbed(
    engine: Path, tmp_path: Path
) -> None:
    driver = ContainerDriver(tmp_path / "data", engine=str(engine))
    log_path = tmp_path / "replica.log"
    started = await driver.start_container(
        spec(), ContainerConfig(), uuid.uuid4(), log_path=log_path
    )
    assert started.container_id == "c" * 64
    calls = [json.loads(line) for line in (tmp_path / "calls.log").read_text().splitlines()]
    run = next(c for c in calls if c[0] == "run")
    assert not any(SECRET in arg for arg in run)  # never on the command line
    assert run[run.index("--cpus") : run.index("--cpus") + 2] == ["--cpus", "0.5"]
    seen = json.loads((tmp_path / "calls.log.envfile").read_text())
    assert seen["mode"] == 0o600
    assert f"API_TOKEN={SECRET}\n" in seen["text"] and "PILOTHOUSE_VERSION=v1\n" in seen["text"]
    assert not list((tmp_path / "data" / "tmp").iterdir())  # removed after the start
    deadline = time.monotonic() + 10
    while "starting with token" not in (log_path.read_text() if log_path.exists() else ""):
        assert time.monotonic() < deadline, "the relay wrote nothing"
        time.sleep(0.05)
    text = log_path.read_text()
    assert SECRET not in text and "starting with token" in text


async def test_a_digest_that_is_not_the_artifacts_is_refused(engine: Path, tmp_path: Path) -> None:
    driver = ContainerDriver(tmp_path / "data", engine=str(engine))
    wrong = "sha256:" + "cd" * 32
    with pytest.raises(RolloutFailed, match=f"the artifact says {wrong}: refused"):
        await driver.resolve_image(spec(wrong), ContainerConfig())
    image_id, digest = await driver.resolve_image(spec(), ContainerConfig())
    assert (image_id, digest) == (HEX, f"sha256:{HEX}")
    calls = (tmp_path / "calls.log").read_text()
    assert '"run"' not in calls  # nothing was started


class Recorder:
    """Events that only remember what they were told."""

    def __init__(self) -> None:
        self.changes: list[tuple[uuid.UUID, str, dict[str, Any]]] = []

    async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None:
        pass

    async def log_many(self, messages: list[str], *, source: str) -> None:
        pass

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        return uuid.uuid4()

    async def replica_changed(
        self, replica_id: uuid.UUID, to: str, *, reason: str | None = None, **fields: Any
    ) -> None:
        self.changes.append((replica_id, to, fields))


def calls(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "calls.log"
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    path.unlink(missing_ok=True)
    return [c for c in found if c[0] != "logs"]  # the log follower runs in the background


def replica(container_id: str) -> ReplicaInfo:
    return ReplicaInfo(uuid.uuid4(), "v0", None, None, 41000, None, container_id=container_id)


async def test_retiring_a_replica_is_one_engine_call(engine: Path, tmp_path: Path) -> None:
    driver = ContainerDriver(tmp_path / "data", engine=str(engine))
    events = Recorder()
    old = replica("d" * 64)
    await driver._retire(old, ContainerConfig(drain_seconds=0, grace_seconds=4), events)
    assert calls(tmp_path) == [["rm", "--force", "--time", "4", "d" * 64]]
    assert [to for _, to, _ in events.changes] == ["stopping", "stopped"]


async def test_a_retired_replica_is_removed_after_the_run_in_progress_here(
    engine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal beside a `run` slows the `run` down (the next replica's start, on the
    rollout's critical path): the retired replica, already out of the router, waits for it."""
    monkeypatch.setenv("FAKE_RUN_SECONDS", "1.5")
    driver = ContainerDriver(tmp_path / "data", engine=str(engine))
    service = spec()
    driver._image_ids[(str(service.service_id), None)] = HEX  # resolved by the rollout
    starting = asyncio.create_task(
        driver.start_container(service, ContainerConfig(), uuid.uuid4(), log_path=tmp_path / "l")
    )
    while not (tmp_path / "calls.log.envfile").exists():  # the `run` has begun
        await asyncio.sleep(0.01)
    events = Recorder()
    await driver._retire(replica("d" * 64), ContainerConfig(drain_seconds=0), events)
    await starting
    order = [c[0] for c in calls(tmp_path)]
    assert order == ["run", "run done", "rm"]
    assert [to for _, to, _ in events.changes] == ["stopping", "stopped"]


async def test_the_check_before_a_rollout_reads_names_and_removes_orphans_at_once(
    engine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned = [replica("a" * 64), replica("b" * 64)]
    listing = [f"{r.container_id} ph-{r.id}" for r in owned] + [f"{'e' * 64} ph-{uuid.uuid4()}"]
    monkeypatch.setenv("FAKE_PS", "\n".join(listing))
    driver = ContainerDriver(tmp_path / "data", engine=str(engine))
    cfg = ContainerConfig()
    service = spec()
    await driver._before_rollout(service, cfg, owned, Recorder())
    assert calls(tmp_path) == []  # a node is prepared before its first replica starts
    events = Recorder()
    assert await driver._prepare(service, cfg, None, events) == HEX
    assert await driver._prepare(service, cfg, None, events) == HEX  # once per rollout
    seen = calls(tmp_path)
    assert sorted(c[0] for c in seen) == ["image", "ps", "rm"]  # no `container inspect`
    assert ["rm", "--force", "e" * 64] in seen  # the orphan, and only it


async def test_a_start_records_its_main_process_before_it_is_ready(
    engine: Path, tmp_path: Path
) -> None:
    driver = ContainerDriver(tmp_path / "data", engine=str(engine))
    events = Recorder()
    # Nothing listens on the port: readiness fails after its timeout, the container is stopped.
    from pilothouse.drivers.readiness import ReadinessSpec

    started, result = await driver._launch_container(
        spec(),
        ContainerConfig(grace_seconds=0),
        ReadinessSpec(path="/health", timeout=0.5, interval=0.05),
        events,
        uuid.uuid4(),
        log_path=tmp_path / "r.log",
        reason=None,
        tail=False,
    )
    assert started is not None and started.pid > 0 and not result.ready
    (_, to, fields), *_ = events.changes
    assert to == "starting" and fields["pid"] == started.pid
    assert fields["container_id"] == "c" * 64
    assert [c[0] for c in calls(tmp_path)][:2] in (["image", "run"], ["run", "container"])


async def test_stats_are_one_engine_call(engine: Path, tmp_path: Path) -> None:
    import psutil

    driver = ContainerDriver(tmp_path / "data", engine=str(engine))
    me = psutil.Process()
    live = ReplicaInfo(
        uuid.uuid4(), "v1", me.pid, me.create_time(), 41000, None, container_id="c" * 64
    )
    status = await driver.status([live])
    assert status[live.id]["cpu_percent"] == 12.5
    assert [c[0] for c in calls(tmp_path)] == ["stats"]  # no `ps` first


async def test_a_start_on_another_node_sends_the_variables_on_stdin(
    engine: Path, tmp_path: Path
) -> None:
    """Through the node's transport (here a LocalTransport standing in for SSH): podman's
    runtime as a global option, the port published on the node's address and read back, the
    variables as the env-file's text on stdin and on no command line."""
    node = NodeAccess(uuid.uuid4(), "web-2", "ssh", "127.0.0.9")
    pool = TransportPool(factory=lambda access: LocalTransport(access.name, access.address))
    pool.remember(node)
    driver = ContainerDriver(tmp_path / "data", engine=str(engine), transports=pool)
    service, replica_id = spec(), uuid.uuid4()
    started = await driver.start_remote(
        service, ContainerConfig(), replica_id, node, log_path=tmp_path / "r.log"
    )
    assert (started.container_id, started.port) == ("c" * 64, 41999) and started.pid > 0
    seen = calls(tmp_path)
    assert all(c[:2] == ["--runtime", "runc"] for c in seen)  # every podman command
    run = next(c[2:] for c in seen if c[2] == "run")
    assert not any(SECRET in arg for arg in run)
    assert run[run.index("--publish") + 1] == "127.0.0.9::8000"
    assert run[run.index("--env-file") + 1] == "/dev/stdin"
    assert run[run.index(f"pilothouse.node={node.id}") - 1] == "--label"
    received = json.loads((tmp_path / "calls.log.envfile").read_text())["text"]
    assert f"API_TOKEN={SECRET}\n" in received and "PORT=8000\n" in received
    assert not (tmp_path / "data" / "tmp").exists()  # nothing written for it anywhere


async def test_the_engine_runs_in_pilothouses_own_folder(tmp_path: Path) -> None:
    """Engine commands run in `<data_dir>/containers`, not in serve's working directory:
    conmon inherits it and writes an `oom` file there when the kernel kills a container."""
    driver = ContainerDriver(tmp_path / "data")
    expected = str(tmp_path / "data" / "containers")
    assert (await driver.run(["pwd"])).strip() == expected
    assert (driver.run_sync(["pwd"]) or "").strip() == expected


async def test_a_container_whose_starting_cannot_be_recorded_is_stopped(
    engine: Path, tmp_path: Path
) -> None:
    """With no `starting` record (the store gone) nothing would look for the container: it is
    stopped, and the store's failure is what is raised."""
    from pilothouse.drivers.readiness import ReadinessSpec

    class CannotRecordStarting(Recorder):
        async def replica_changed(
            self, replica_id: uuid.UUID, to: str, *, reason: str | None = None, **fields: Any
        ) -> None:
            if to == "starting":
                raise RuntimeError("the store is gone")
            await super().replica_changed(replica_id, to, reason=reason, **fields)

    driver = ContainerDriver(tmp_path / "data", engine=str(engine))
    service = spec()
    driver._image_ids[(str(service.service_id), None)] = HEX  # resolved by the rollout
    with pytest.raises(RuntimeError, match="the store is gone"):
        await driver._launch_container(
            service,
            ContainerConfig(grace_seconds=1),
            ReadinessSpec(timeout=0.5),
            CannotRecordStarting(),
            uuid.uuid4(),
            log_path=tmp_path / "replica.log",
            reason=None,
            tail=False,
        )
    assert [c[0] for c in calls(tmp_path)].count("rm") == 1
