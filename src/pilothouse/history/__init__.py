"""Status history: immutable rows for every status change."""
