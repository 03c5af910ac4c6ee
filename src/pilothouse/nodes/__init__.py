"""Nodes: where replicas run, their capacity and what is allocated on them (seed 004)."""
