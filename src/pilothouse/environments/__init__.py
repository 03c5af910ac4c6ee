"""Environments: where services run, with config, features and limits."""
