"""What a restore drill concludes (pure): the row counts and content checksums recorded at
backup time against those of the restored copy, naming every table that differs."""

from __future__ import annotations

from typing import Any

from pilothouse.backups.databases import Contents


def compare_counts(recorded: dict[str, Any], restored: dict[str, Any]) -> list[str]:
    """Differences between the values recorded at backup time and a restore's, per table."""
    problems = []
    for table in sorted(set(recorded) | set(restored)):
        want, got = recorded.get(table), restored.get(table)
        if want != got:
            problems.append(f"{table}: recorded {want}, restored {got}")
    return problems


def drill_verdict(
    recorded_counts: dict[str, Any],
    recorded_sums: dict[str, Any] | None,
    restored: Contents,
) -> tuple[bool, str]:
    """Pass or fail, and what a drill found: counts first, then content checksums (when the
    backup recorded them), naming every table that differs."""
    counts = restored.counts
    problems = compare_counts(recorded_counts, counts)
    if problems:
        return False, "row counts differ: " + "; ".join(problems[:20])
    found = f"restored {len(counts)} tables, {sum(counts.values())} rows"
    if recorded_sums is None or restored.checksums is None:
        return True, f"{found}: counts match (no content checksums were recorded)"
    differ = compare_counts(recorded_sums, restored.checksums)
    if differ:
        tables = ", ".join(d.split(":", 1)[0] for d in differ[:20])
        return False, f"{found}: counts match but content differs in {tables}"
    return True, f"{found}: counts match, content matches"
