"""The backup status machine (seed 000 BackupJob, seed 003 Backup Records).

in_progress -> completed | failed; a failed backup is retried (failed -> in_progress) while it has
retries left; completed and failed backups expire when their retention ends; expired is final.
"""

from __future__ import annotations

from pilothouse.core.statemachine import Table

TABLE: Table = {
    "in_progress": frozenset({"completed", "failed"}),
    "completed": frozenset({"expired"}),
    "failed": frozenset({"in_progress", "expired"}),
    "expired": frozenset(),
}
