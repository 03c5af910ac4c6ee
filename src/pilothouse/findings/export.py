"""SARIF 2.1.0 export of findings (one run per tool), for code scanning dashboards and archives.

Each finding keeps its rule id, level (critical and high -> error, medium -> warning, low ->
note) and `security-severity` (critical 9.5, high 8.0, medium 5.5, low 2.0), its location, CWE
as a tag, pilothouse's fingerprint in `partialFingerprints` and its id and status in the
result's properties.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pilothouse.findings.models import SecurityFinding

LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
SCORE = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "2.0"}
SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def to_sarif(findings: Iterable[SecurityFinding]) -> dict[str, Any]:
    """A SARIF log of the findings, grouped into one run per tool."""
    runs: dict[str, dict[str, Any]] = {}
    for f in findings:
        run = runs.setdefault(
            f.tool, {"tool": {"driver": {"name": f.tool, "rules": []}}, "results": [], "_rules": {}}
        )
        if f.rule_id not in run["_rules"]:
            run["_rules"][f.rule_id] = len(run["tool"]["driver"]["rules"])
            rule: dict[str, Any] = {
                "id": f.rule_id,
                "shortDescription": {"text": f.title},
                "properties": {"security-severity": SCORE[f.severity]},
            }
            if f.remediation:
                rule["help"] = {"text": f.remediation}
            if f.cwe_id:
                rule["properties"]["tags"] = ["security", f.cwe_id]
            run["tool"]["driver"]["rules"].append(rule)
        result: dict[str, Any] = {
            "ruleId": f.rule_id,
            "ruleIndex": run["_rules"][f.rule_id],
            "level": LEVEL[f.severity],
            "message": {"text": f.description or f.title},
            "partialFingerprints": {"pilothouse/v1": f.fingerprint},
            "properties": {
                "security-severity": SCORE[f.severity],
                "pilothouse-id": str(f.id),
                "status": f.status,
            },
        }
        if f.path:
            region = {"startLine": f.line} if f.line else None
            physical: dict[str, Any] = {"artifactLocation": {"uri": f.path}}
            if region:
                physical["region"] = region
            result["locations"] = [{"physicalLocation": physical}]
        run["results"].append(result)
    for run in runs.values():
        run.pop("_rules")
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": list(runs.values())}
