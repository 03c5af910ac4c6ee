"""Deployments: one rollout of an artifact to a service, with its logs."""
