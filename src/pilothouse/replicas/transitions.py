"""The replica status machine (seed 004: pending, starting, running, stopping, stopped, failed).

pending -> starting -> running -> stopping -> stopped; any step may fail; a failed or stopped
replica may be started again (a restart, counted in restart_count).
"""

from __future__ import annotations

from pilothouse.core.statemachine import Table

TABLE: Table = {
    "pending": frozenset({"starting", "stopped", "failed"}),
    "starting": frozenset({"running", "stopping", "failed"}),
    "running": frozenset({"stopping", "failed"}),
    "stopping": frozenset({"stopped", "failed"}),
    "stopped": frozenset({"starting"}),
    "failed": frozenset({"starting", "stopped"}),
}
