"""cgroups v2 limits (drivers/cgroups.py): the files written, finding a usable hierarchy, OOM
counts. What the kernel does with the files is only exercised on a host with cgroup v2 memory and
cpu controllers; elsewhere `detect` says why replicas are sampled instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.drivers.cgroups import cgroup2_mounts, detect, limit_files, oom_kills


@pytest.mark.parametrize(
    ("memory", "cpu", "files"),
    [
        (
            512,
            0.5,
            {"memory.max": "536870912", "memory.swap.max": "0", "cpu.max": "50000 100000"},
        ),
        (1024, 2, {"memory.max": "1073741824", "memory.swap.max": "0", "cpu.max": "200000 100000"}),
        (None, 1.25, {"cpu.max": "125000 100000"}),
        (768, None, {"memory.max": "805306368", "memory.swap.max": "0"}),
        (None, None, {}),
        (None, 0.001, {"cpu.max": "1000 100000"}),  # the kernel's minimum quota
    ],
)
def test_limit_files(memory: float | None, cpu: float | None, files: dict[str, str]) -> None:
    assert limit_files(memory, cpu) == files


MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
proc /proc proc rw 0 0
"""


def test_cgroup2_mounts_are_read_from_the_mount_table() -> None:
    assert cgroup2_mounts(MOUNTS) == [Path("/sys/fs/cgroup/unified")]
    assert cgroup2_mounts("proc /proc proc rw 0 0\n") == []


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n", 1),
        ("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", 0),
        ("", 0),
        ("oom_kill 12\noom_group_kill 0\n", 12),
    ],
)
def test_oom_kills(text: str, count: int) -> None:
    assert oom_kills(text) == count


def _hierarchy(tmp_path: Path, controllers: str) -> Path:
    mount = tmp_path / "unified"
    mount.mkdir(parents=True)
    (mount / "cgroup.controllers").write_text(controllers)
    (mount / "cgroup.subtree_control").write_text("")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {mount} cgroup2 rw 0 0\n")
    return mounts


def test_detect_names_why_replicas_are_sampled(tmp_path: Path) -> None:
    none = tmp_path / "none"
    none.write_text("proc /proc proc rw 0 0\n")
    assert detect(none) == detect(none)  # no side effects
    assert detect(none).root is None and detect(none).why == "no cgroup v2 hierarchy is mounted"
    hybrid = detect(_hierarchy(tmp_path, "hugetlb\n"))
    assert hybrid.root is None
    assert hybrid.why == f"{tmp_path / 'unified'} offers no memory or cpu controller"
    missing = tmp_path / "missing"
    assert detect(missing).root is None and "cannot read" in detect(missing).why


def test_detect_prepares_a_group_for_the_replicas(tmp_path: Path) -> None:
    """Where memory and cpu are offered: both enabled for the children, a pilothouse group."""
    mounts = _hierarchy(tmp_path / "ok", "cpuset cpu io memory pids\n")
    root = tmp_path / "ok" / "unified"
    (root / "pilothouse").mkdir()  # the kernel would create its control files
    (root / "pilothouse" / "cgroup.subtree_control").write_text("")
    found = detect(mounts)
    assert found.root == root / "pilothouse" and found.why == f"cgroup v2 at {root}"
    assert (root / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (root / "pilothouse" / "cgroup.subtree_control").read_text() == "+memory +cpu"


def test_this_host_says_which_enforcement_it_gets() -> None:
    found = detect()
    if found.root is None:
        assert found.why and not found.why.startswith("cgroup v2 at")
    else:
        assert found.why.startswith("cgroup v2 at") and found.root.name == "pilothouse"
