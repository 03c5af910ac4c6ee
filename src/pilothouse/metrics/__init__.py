"""Metrics: series and samples, push ingestion, bounded storage with rollups, queries, and
threshold alert rules (docs/metrics.md)."""
