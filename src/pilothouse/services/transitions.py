"""The service status machine (seed 004: pending, scheduled, running, stopped, failed, deleted).

pending -> scheduled -> running -> stopped | failed; a stopped or failed service can be scheduled
again; any live status may be deleted; deleted is final.
"""

from __future__ import annotations

from pilothouse.core.statemachine import Table

TABLE: Table = {
    "pending": frozenset({"scheduled", "failed", "deleted"}),
    "scheduled": frozenset({"running", "failed", "stopped", "deleted"}),
    "running": frozenset({"scheduled", "stopped", "failed", "deleted"}),
    "stopped": frozenset({"scheduled", "deleted"}),
    "failed": frozenset({"scheduled", "stopped", "deleted"}),
    "deleted": frozenset(),
}
