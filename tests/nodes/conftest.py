"""Namespace hosts with their own sshd (tests/support/netns.py) for the nodes tests."""

from tests.support.netns import netns_hosts

__all__ = ["netns_hosts"]
