"""The pure rules of hosts reached over SSH (nodes/hosts.py): the target syntax, the host-key
trust decision, the capacity and software facts, and what a probe does to a node's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.errors import ValidationFailed
from pilothouse.nodes import hosts

FP = "SHA256:" + "A" * 43
OTHER = "SHA256:" + "B" * 43


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("root@198.18.1.2", ("root", "198.18.1.2", 22)),
        ("deploy@web-2.example.com:2222", ("deploy", "web-2.example.com", 2222)),
    ],
)
def test_target(text: str, parsed: tuple[str, str, int]) -> None:
    assert hosts.parse_target(text) == parsed


@pytest.mark.parametrize(
    "text", ["198.18.1.2", "root@", "@host", "root@host:0", "root@host:99999", "a b@host"]
)
def test_bad_target(text: str) -> None:
    with pytest.raises(ValueError, match=r"USER@HOST|port"):
        hosts.parse_target(text)


@pytest.mark.parametrize("text", ["root@[2001:db8::5]:2200", "root@[::1]", "root@[fe80::1%eth0]"])
def test_ipv6_target_refused(text: str) -> None:
    # Replicas' addresses, readiness probes, the router and the shim are IPv4 (or names) only.
    with pytest.raises(ValueError, match="IPv6 is not supported"):
        hosts.parse_target(text)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("198.18.1.2", False),
        ("web-2.example.com", False),
        ("2001:db8::5", True),
        ("::1", True),
        ("::ffff:198.18.1.2", True),
    ],
)
def test_check_address(address: str, refused: bool) -> None:
    if refused:
        with pytest.raises(ValidationFailed) as failed:
            hosts.check_address(address)
        assert failed.value.field == "address" and "IPv6" in failed.value.rule
    else:
        assert hosts.check_address(address) == address


def test_first_contact_shows_the_fingerprint_and_the_option_to_pass() -> None:
    text = hosts.trust_problem("web-2", "root@h:22", "ssh-ed25519", FP, None)
    assert text is not None and "first contact" in text and f"--trust {FP}" in text
    assert "\n" not in text


def test_wrong_trust_names_both_and_right_trust_passes() -> None:
    text = hosts.trust_problem("web-2", "root@h:22", "ssh-ed25519", FP, OTHER)
    assert text is not None and FP in text and OTHER in text and "refused" in text
    assert hosts.trust_problem("web-2", "root@h:22", "ssh-ed25519", FP, FP) is None


def test_facts_with_cgroup_limits_and_software() -> None:
    facts = hosts.parse_facts(
        "cpus=8\ncpu_max=150000 100000\nmem_kb=16384000\nmem_max=2147483648\n"
        "disk_kb=104857600\ngpus=2\nhostname=web-2\npython3=3.11.2\npodman=4.3.1\n"
    )
    assert facts.capacity == {
        "cpu_cores": 1.5,
        "memory_mb": 2048.0,
        "gpu_units": 2.0,
        "storage_gb": 100.0,
    }
    assert (facts.hostname, facts.python3, facts.podman) == ("web-2", "3.11.2", "4.3.1")
    assert hosts.missing_software(facts) is None


def test_facts_without_limits_or_software() -> None:
    facts = hosts.parse_facts("cpus=4\ncpu_max=max 100000\nmem_kb=4096000\nmem_max=max\ngpus=0\n")
    assert facts.capacity == {
        "cpu_cores": 4.0,
        "memory_mb": 4000.0,
        "gpu_units": 0.0,
        "storage_gb": 0.0,
    }
    assert facts.python3 is None and facts.podman is None
    assert "neither python3" in (hosts.missing_software(facts) or "")


NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "answered", "silent_for", "expected"),
    [
        ("ready", True, 100, "seen"),
        ("unreachable", True, 100, "returned"),
        ("ready", False, 5, "silent"),
        ("ready", False, 15, "lost"),
        ("draining", False, 20, "lost"),
        ("unreachable", False, 100, "silent"),
        ("down", False, 100, "silent"),
        ("down", True, 100, "seen"),
    ],
)
def test_verdict(status: str, answered: bool, silent_for: float, expected: str) -> None:
    last = NOW - timedelta(seconds=silent_for)
    got = hosts.verdict(status=status, answered=answered, last_seen_at=last, now=NOW, after=15)
    assert got == expected


@given(
    status=st.sampled_from(["ready", "draining", "down", "unreachable"]),
    silent_for=st.integers(min_value=0, max_value=10**6),
    after=st.integers(min_value=2, max_value=3600),
)
def test_an_answer_never_loses_a_node(status: str, silent_for: int, after: int) -> None:
    last = NOW - timedelta(seconds=silent_for)
    got = hosts.verdict(status=status, answered=True, last_seen_at=last, now=NOW, after=after)
    assert got in ("seen", "returned")
    quiet = hosts.verdict(status=status, answered=False, last_seen_at=last, now=NOW, after=after)
    assert (quiet == "lost") == (status in ("ready", "draining") and silent_for >= after)
