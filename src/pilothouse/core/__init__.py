"""Shared toolkit: database, types, clock, crypto, network probes. Imports no feature."""
