"""Shared toolkit: database, types, clock, crypto. Imports no feature package."""
