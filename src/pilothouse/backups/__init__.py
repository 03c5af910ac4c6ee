"""Backups: streamed, compressed, encrypted, verified database backups, drills and retention."""
