"""Nodes and replicas: where and how a service's instances run."""
