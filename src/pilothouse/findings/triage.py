"""Triage transitions of a finding (pure table; service.triage applies and audits them).

open -> accepted_risk (reason and expiry required), false_positive (reason required), resolved
(by a scan only); accepted_risk -> open (reopen, or the expiry passing), false_positive;
false_positive -> open (reopen); resolved -> open (reopen by hand, or seen again by a scan).
"""

from __future__ import annotations

from pilothouse.core.statemachine import Table

TABLE: Table = {
    "open": frozenset({"accepted_risk", "false_positive", "resolved"}),
    "accepted_risk": frozenset({"open", "false_positive", "resolved"}),
    "false_positive": frozenset({"open"}),
    "resolved": frozenset({"open"}),
}
#: What people may ask for (a scan resolves; nobody resolves by hand without a scan to show it).
ACTIONS = {"accept": "accepted_risk", "false-positive": "false_positive", "reopen": "open"}
#: Longest an accepted risk may run before it must be accepted again.
MAX_ACCEPT_DAYS = 365
