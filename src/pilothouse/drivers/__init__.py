"""Deployment drivers: carry out what the control plane decides (process, command)."""
