"""Pure decisions of the findings capability: severities, SLAs, the compliance score.

Severity (GitHub code scanning's mapping): a numeric `security-severity` (CVSS-like, 0-10) wins:
>= 9.0 critical, >= 7.0 high, >= 4.0 medium, otherwise low. Without one, the SARIF `level`:
error -> high, warning -> medium, note and none -> low (a SARIF result without a level is a
warning). Native formats map their own words: bandit and semgrep HIGH/ERROR -> high,
MEDIUM/WARNING -> medium, LOW/INFO -> low; pip-audit reports no severity, so a known
vulnerability in a dependency is high.

Compliance score of a set of findings (0-100, higher is better), on the findings that are open
(accepted risks and false positives do not count):
    score = max(0, 100 - (25 x critical + 10 x high + 3 x medium + 1 x low))
so one open critical costs a quarter, four make it 0; no open findings is 100.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

SEVERITIES = ("low", "medium", "high", "critical")
RANK = {name: i for i, name in enumerate(SEVERITIES)}
SCAN_TYPES = ("dependency", "sast", "container", "iac")
SCAN_STATUSES = ("pending", "running", "completed", "failed")
FINDING_STATUSES = ("open", "resolved", "accepted_risk", "false_positive")
#: Default days to fix an open finding, by severity (PILOTHOUSE_FINDINGS_SLA_DAYS overrides).
DEFAULT_SLA_DAYS = {"critical": 7, "high": 30, "medium": 90, "low": 180}
SCORE_WEIGHTS = {"critical": 25.0, "high": 10.0, "medium": 3.0, "low": 1.0}
LEVELS = {"error": "high", "warning": "medium", "note": "low", "none": "low"}
WORDS = {
    "critical": "critical",
    "high": "high",
    "error": "high",
    "medium": "medium",
    "moderate": "medium",
    "warning": "medium",
    "low": "low",
    "info": "low",
    "informational": "low",
    "note": "low",
    "none": "low",
    "undefined": "low",
}


def from_score(score: float) -> str:
    """A CVSS-like 0-10 security-severity as one of the four severities."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low"


def sarif_severity(security_severity: object, level: object) -> str:
    """The severity of a SARIF result from its (or its rule's) security-severity and level."""
    if security_severity is not None:
        try:
            return from_score(float(str(security_severity)))
        except ValueError:
            pass
    return LEVELS.get(str(level or "warning").lower(), "medium")


def word_severity(word: object, default: str = "medium") -> str:
    """A scanner's severity word (HIGH, ERROR, Moderate...) as one of the four severities."""
    return WORDS.get(str(word or "").strip().lower(), default)


def sla_due(first_seen: datetime, severity: str, days: Mapping[str, int]) -> datetime:
    """When an open finding of this severity, first seen then, breaches its SLA."""
    return first_seen + timedelta(days=days.get(severity, DEFAULT_SLA_DAYS[severity]))


def compliance_score(counts: Mapping[str, int]) -> float:
    """The documented score (module docstring) of open findings counted by severity."""
    penalty = sum(SCORE_WEIGHTS[s] * counts.get(s, 0) for s in SEVERITIES)
    return round(max(0.0, 100.0 - penalty), 1)


def summary(
    counts: Mapping[str, int], open_counts: Mapping[str, int], duration_ms: int
) -> dict[str, float | int]:
    """Seed 002 SecurityScanSummary: totals of what the scan reported, its duration, the score
    of what is open."""
    return {
        "total_findings": sum(counts.get(s, 0) for s in SEVERITIES),
        "critical_findings": counts.get("critical", 0),
        "high_findings": counts.get("high", 0),
        "medium_findings": counts.get("medium", 0),
        "low_findings": counts.get("low", 0),
        "scan_duration_ms": max(0, int(duration_ms)),
        "compliance_score": compliance_score(open_counts),
    }


def blocking(
    findings: Iterable[tuple[str, str]], severities: Iterable[str]
) -> list[tuple[str, str]]:
    """The (id, severity) pairs of open findings the gate blocks on, most severe first."""
    wanted = set(severities)
    hits = [f for f in findings if f[1] in wanted]
    return sorted(hits, key=lambda f: (-RANK[f[1]], f[0]))
