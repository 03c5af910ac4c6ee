"""Artifacts: versioned, immutable builds of a service."""
