"""Pure rules and parsers: severities, the score, fingerprints, the matcher, the four formats."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.findings import formats, rules
from pilothouse.findings.deduplicate import Incoming, Known, plan
from pilothouse.findings.fingerprints import content_key, fingerprint, normalise_path
from tests.findings.support import result, sarif


@pytest.mark.parametrize(
    ("score", "level", "expected"),
    [
        ("9.8", None, "critical"),
        ("9.0", "note", "critical"),
        ("8.9", None, "high"),
        ("7.0", None, "high"),
        ("6.9", "error", "medium"),
        ("4.0", None, "medium"),
        ("3.9", "error", "low"),
        (None, "error", "high"),
        (None, "warning", "medium"),
        (None, None, "medium"),
        (None, "note", "low"),
        (None, "none", "low"),
        ("not a number", "error", "high"),
    ],
)
def test_sarif_severity(score: str | None, level: str | None, expected: str) -> None:
    assert rules.sarif_severity(score, level) == expected


@pytest.mark.parametrize(
    ("counts", "score"),
    [({}, 100.0), ({"critical": 1}, 75.0), ({"critical": 4}, 0.0), ({"high": 2, "low": 3}, 77.0)],
)
def test_compliance_score(counts: dict[str, int], score: float) -> None:
    assert rules.compliance_score(counts) == score


@settings(max_examples=30)
@given(st.dictionaries(st.sampled_from(rules.SEVERITIES), st.integers(0, 50)))
def test_score_is_bounded_and_more_findings_never_raise_it(counts: dict[str, int]) -> None:
    score = rules.compliance_score(counts)
    assert 0 <= score <= 100
    worse = {**counts, "low": counts.get("low", 0) + 1}
    assert rules.compliance_score(worse) <= score


def test_summary_has_exactly_the_seed_fields() -> None:
    out = rules.summary({"critical": 1, "low": 2}, {"critical": 1}, 1234)
    assert list(out) == [
        "total_findings",
        "critical_findings",
        "high_findings",
        "medium_findings",
        "low_findings",
        "scan_duration_ms",
        "compliance_score",
    ]
    assert out["total_findings"] == 3 and out["compliance_score"] == 75.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("file:///src/app/x.py", "/src/app/x.py"),
        ("./a/b.py", "a/b.py"),
        ("a\\b.py", "a/b.py"),
    ],
)
def test_normalise_path(raw: str, expected: str) -> None:
    assert normalise_path(raw) == expected
    assert normalise_path("/src/app/x.py", "/src/app") == "x.py"


def test_fingerprint_ignores_lines_and_whitespace_but_not_paths_or_rules() -> None:
    a = fingerprint("R1", "a.py", 10, "eval(x)")
    assert a == fingerprint("R1", "a.py", 99, "  eval( x)".replace("( ", "("))
    assert a != fingerprint("R1", "b.py", 10, "eval(x)")
    assert a != fingerprint("R2", "a.py", 10, "eval(x)")
    assert fingerprint("R1", "a.py", 1, None) != fingerprint("R1", "a.py", 2, None)
    pf = {"primaryLocationLineHash": "abc:1"}
    assert fingerprint("R1", "a.py", 1, "x", pf) == fingerprint("R1", "z.py", 7, "y", pf)
    assert content_key("R1", "eval(x)") == content_key("R1", " eval(x) ")


def _known(i: int, status: str = "open", ck: str | None = None) -> Known:
    return Known(i, f"fp{i}", ck, status)


@pytest.mark.parametrize(
    ("known", "incoming", "expected"),
    [
        # reimport: all matched, nothing resolved
        ([_known(1), _known(2)], [("fp1", None), ("fp2", None)], {"matched": 2, "resolved": []}),
        # one gone: resolved; accepted risks too, false positives never
        (
            [_known(1), _known(2, "accepted_risk"), _known(3, "false_positive")],
            [],
            {"matched": 0, "resolved": [1, 2]},
        ),
        # a resolved one comes back: reopened
        ([_known(1, "resolved")], [("fp1", None)], {"reopened": [1]}),
        # renamed file: same content key, other fingerprint
        ([_known(1, ck="c")], [("fpX", "c")], {"renamed": {0: 1}, "new": []}),
        # two candidates for one content key: no guess, a new finding
        ([_known(1, ck="c"), _known(2, ck="c")], [("fpX", "c")], {"new": [0]}),
    ],
)
def test_plan(
    known: list[Known], incoming: list[tuple[str, str | None]], expected: dict[str, Any]
) -> None:
    out = plan({k.fingerprint: k for k in known}, [Incoming(*i) for i in incoming], complete=True)
    if "matched" in expected:
        assert len(out.matched) == expected["matched"]
    for name in ("resolved", "reopened", "renamed", "new"):
        if name in expected:
            assert getattr(out, name) == expected[name]


def _read(body: Any, fmt: str | None = None) -> list[formats.Raw]:
    return list(formats.read(io.BytesIO(json.dumps(body).encode()), fmt))


def test_sarif_rules_cwe_help_and_partial_fingerprints() -> None:
    rule = {
        "id": "py/sql-injection",
        "shortDescription": {"text": "SQL injection"},
        "help": {"text": "Use parameters."},
        "helpUri": "https://example.invalid/sqli",
        "properties": {"security-severity": "9.1", "tags": ["security", "external/cwe/cwe-089"]},
    }
    results = [
        result("py/sql-injection", "file:///src/db.py", 4, "q % x", partialFingerprints={"h": "1"}),
        result(
            "other",
            "a.py",
            1,
            "x",
            level="note",
            taxa=[{"toolComponent": {"name": "CWE"}, "id": "79"}],
        ),
    ]
    first, second = _read(sarif(results, tool="CodeQL", rules=[rule]))
    assert (first.tool, first.severity, first.cwe_id, first.title) == (
        "CodeQL",
        "critical",
        "CWE-89",
        "SQL injection",
    )
    assert first.remediation == "Use parameters.\nhttps://example.invalid/sqli"
    assert first.partial == (("h", "1"),) and first.line == 4
    assert (second.severity, second.cwe_id) == ("low", "CWE-79")


def test_sarif_is_validated_against_the_schema() -> None:
    with pytest.raises(formats.ReportError, match="version"):
        _read({"version": "2.0.0", "runs": []}, "sarif")
    bad = sarif([result("R", "a.py", 1, "x", level="fatal")])
    with pytest.raises(formats.ReportError, match=r"results\[0\].*level"):
        _read(bad)
    with pytest.raises(formats.ReportError, match="schema"):
        _read({"version": "2.1.0", "runs": [{"tool": {}}]}, "sarif")


def test_multiple_runs_keep_their_own_rules() -> None:
    log = sarif([result("A", "a.py", 1, "x")], tool="one")
    log["runs"].append(sarif([result("B", "b.py", 1, "y")], tool="two")["runs"][0])
    assert [(r.tool, r.rule_id) for r in _read(log)] == [("one", "A"), ("two", "B")]


def test_native_formats() -> None:
    semgrep = {
        "results": [
            {
                "check_id": "python.lang.security.audit.eval-detected",
                "path": "app.py",
                "start": {"line": 3},
                "extra": {
                    "severity": "ERROR",
                    "message": "eval",
                    "lines": "eval(x)",
                    "metadata": {"cwe": ["CWE-95: Eval Injection"]},
                    "fingerprint": "requires login",
                },
            }
        ],
        "errors": [],
    }
    (s,) = _read(semgrep)
    assert (s.tool, s.severity, s.cwe_id, s.partial) == ("semgrep", "high", "CWE-95", ())
    audit = {
        "dependencies": [
            {
                "name": "Jinja2",
                "version": "2.10",
                "vulns": [
                    {
                        "id": "PYSEC-2019-217",
                        "fix_versions": ["2.10.1"],
                        "aliases": ["CVE-2019-10906"],
                        "description": "sandbox escape",
                    }
                ],
            },
            {"name": "ok", "version": "1", "vulns": []},
        ],
        "fixes": [],
    }
    (a,) = _read(audit)
    assert (a.tool, a.severity, a.path, a.remediation) == (
        "pip-audit",
        "high",
        "requirements:jinja2",
        "upgrade Jinja2 to 2.10.1",
    )
    bandit = {
        "generated_at": "x",
        "results": [
            {
                "test_id": "B602",
                "test_name": "subprocess_popen_with_shell_equals_true",
                "issue_severity": "HIGH",
                "issue_confidence": "HIGH",
                "issue_cwe": {"id": 78},
                "issue_text": "shell",
                "filename": "./app.py",
                "line_number": 17,
                "line_range": [17],
                "code": "16 def f():\n17     return call(c, shell=True)\n18 \n",
                "more_info": "u",
            }
        ],
    }
    (b,) = _read(bandit)
    assert (b.severity, b.cwe_id, b.path, b.snippet) == (
        "critical",
        "CWE-78",
        "app.py",
        "    return call(c, shell=True)",
    )
    with pytest.raises(formats.ReportError):
        _read({"something": []})
