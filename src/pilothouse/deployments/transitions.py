"""The deployment status machine (seed 002 DeploymentConfig, seed 001 Deployment Event).

pending -> building -> deploying -> success | failed; success -> rolled_back;
failed -> rolled_back. A deployment that cannot get going (refused, interrupted) may also fail
from pending or building; nothing else is allowed.
"""

from __future__ import annotations

from pilothouse.core.statemachine import Table

TABLE: Table = {
    "pending": frozenset({"building", "failed"}),
    "building": frozenset({"deploying", "failed"}),
    "deploying": frozenset({"success", "failed"}),
    "success": frozenset({"rolled_back"}),
    "failed": frozenset({"rolled_back"}),
    "rolled_back": frozenset(),
}
TERMINAL = frozenset({"success", "failed", "rolled_back"})
