"""The container tests' shared fixtures: the sample images, containers removed after a test,
and namespace hosts with their own sshd (tests/support/netns.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import container_image
from tests.support.netns import netns_hosts

__all__ = ["containers_removed", "netns_hosts", "sample_images"]


@pytest.fixture(scope="session")
def sample_images() -> tuple[tuple[str, str], tuple[str, str]]:
    """The two sample images (built once, cached in podman's storage between runs)."""
    try:
        return container_image.image("1"), container_image.image("2")
    except container_image.Unavailable as exc:
        if os.environ.get("PILOTHOUSE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"podman is required here (./dev test installs it): {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def containers_removed() -> Iterator[list[str]]:
    """Service ids whose labelled containers are removed after the test, whatever happens."""
    services: list[str] = []
    yield services
    for service_id in services:
        ids = container_image.podman(
            "ps", "-a", "-q", "--filter", f"label=pilothouse.service={service_id}", check=False
        ).stdout.split()
        if ids:
            container_image.podman("rm", "-f", "-t", "0", *ids, check=False)
