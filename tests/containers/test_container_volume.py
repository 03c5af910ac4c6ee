"""A service's storage volume holds at most `storage_gb` (real podman, as root): the volume is
backed by a sparse ext4 image mounted through a loop device, so a write past the size fails
with "no space left" inside the container. Without a size, the volume is a plain one."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.drivers.base import RolloutFailed, ServiceSpec
from pilothouse.drivers.container import ContainerConfig, ContainerDriver, volume_name
from tests import container_image

PROBE = """
import os
s = os.statvfs("/data")
print(json.dumps({"size": s.f_blocks * s.f_frsize}))
fd = os.open("/data/big", os.O_CREAT | os.O_WRONLY)
try:
    os.posix_fallocate(fd, 0, 2 * 1024**3)
    print(json.dumps({"allocated": True}))
except OSError as exc:
    print(json.dumps({"allocated": False, "errno": exc.errno}))
"""


@pytest.fixture
def image() -> str:
    try:
        ref, _ = container_image.image("1")
    except container_image.Unavailable as exc:
        if os.environ.get("PILOTHOUSE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"podman is required here (./dev test installs it): {exc}")
        pytest.skip(str(exc))
    return ref


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Volumes removed after the test."""
    made: list[str] = []
    yield made
    for name in made:
        container_image.podman("volume", "rm", "--force", name, check=False)


def spec(name: str, storage_gb: int | None) -> ServiceSpec:
    return ServiceSpec(
        service_id=uuid.uuid4(),
        service_name=name,
        environment_name="e",
        command=None,
        image="unused",
        version="v1",
        commit_sha=None,
        target_replicas=1,
        env={},
        storage_gb=storage_gb,
    )


def probe(image: str, volume: str) -> list[dict[str, Any]]:
    done = container_image.podman(
        "run", "--rm", "-v", f"{volume}:/data", image, "/usr/bin/python3", "-c",
        "import json\n" + PROBE,
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.skipif(os.geteuid() != 0, reason="a loop device needs root")
async def test_a_volume_holds_at_most_storage_gb(
    image: str, names: list[str], tmp_path: Path
) -> None:
    driver = ContainerDriver(tmp_path / "data")
    sized = spec(f"vol-{uuid.uuid4().hex[:8]}", 1)
    names.append(volume_name(sized))
    cfg = ContainerConfig(data_path="/data")
    note = await driver.ensure_volume(sized, cfg)
    assert "at most 1 GB" in note
    size, allocated = probe(image, volume_name(sized))
    assert 0.8 * 1024**3 < size["size"] <= 1024**3
    assert allocated == {"allocated": False, "errno": 28}  # ENOSPC: the size holds
    # Found again on the next rollout, not made twice; the data stays.
    assert "at most 1 GB" in await driver.ensure_volume(sized, cfg)
    assert await driver.ensure_volume(spec(sized.service_name, 2), cfg) == (
        f"storage: volume {volume_name(sized)} holds at most 1 GB (storage_gb is now 2: "
        "a volume is not resized)"
    )

    image_file = tmp_path / "data" / "volumes" / f"{volume_name(sized)}.ext4"
    image_file.rename(image_file.with_suffix(".gone"))
    with pytest.raises(RolloutFailed, match="is missing, so the volume cannot be mounted"):
        await driver.ensure_volume(sized, cfg)

    plain = spec(f"vol-{uuid.uuid4().hex[:8]}", None)
    names.append(volume_name(plain))
    assert "no size limit" in await driver.ensure_volume(plain, cfg)
    size, allocated = probe(image, volume_name(plain))
    assert size["size"] > 2 * 1024**3 and allocated == {"allocated": True}  # the host's disk
