"""Report formats: SARIF 2.1.0 and the native JSON of bandit, pip-audit and semgrep, read as
streams (ijson) into plain `Raw` findings; nothing here touches the store.

A SARIF file is read twice: once for its envelope (every run without its results: tool, rules,
taxonomies), validated against the SARIF 2.1.0 schema shipped beside this module (OASIS's
final 2.1.0 schema, as published in Microsoft's MIT-licensed @microsoft/jest-sarif package), then
once for its results, each validated against the schema's `result` definition as it streams. So
memory holds the rules and one result at a time, never the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

import fastjsonschema
import ijson

from pilothouse.findings.fingerprints import flagged_lines, normalise_path
from pilothouse.findings.rules import sarif_severity, word_severity

FORMATS = ("sarif", "bandit", "pip-audit", "semgrep")
SCHEMA_FILE = Path(__file__).with_name("sarif-schema-2.1.0.json")
_CWE = re.compile(r"cwe[-_/ ]?0*(\d+)", re.IGNORECASE)
MAX_TEXT = 4000


class ReportError(Exception):
    """The report is not valid: `where` says which part (a JSON path), `rule` what is wrong."""

    def __init__(self, where: str, rule: str) -> None:
        super().__init__(f"{where}: {rule}")
        self.where = where
        self.rule = rule


@dataclass(slots=True)
class Raw:
    """One finding as a report states it (before fingerprinting)."""

    tool: str
    rule_id: str
    severity: str
    title: str
    description: str
    path: str
    line: int | None
    cwe_id: str | None = None
    remediation: str | None = None
    snippet: str | None = None
    partial: tuple[tuple[str, str], ...] = ()
    baseline_state: str | None = None


def cwe_of(*values: object) -> str | None:
    """`CWE-79` from the first value naming one (`CWE-79: ...`, `external/cwe/cwe-079`, 79)."""
    for value in values:
        if value is None or value == "":
            continue
        if isinstance(value, int):
            return f"CWE-{value}"
        found = _CWE.search(str(value))
        if found:
            return f"CWE-{int(found.group(1))}"
        if str(value).isdigit():
            return f"CWE-{int(str(value))}"
    return None


def _cut(text: object) -> str:
    return str(text or "")[:MAX_TEXT]


# -- detection ----------------------------------------------------------------------------------


def detect(stream: IO[bytes]) -> str:
    """The format of a report from its top-level keys (and its first result's)."""
    keys: set[str] = set()
    try:
        for prefix, event, value in ijson.parse(stream):
            if event == "map_key" and prefix == "":
                keys.add(str(value))
                if value in ("runs", "$schema") or value == "dependencies":
                    break
            elif event == "map_key" and prefix == "results.item":
                if value in ("test_id", "issue_severity"):
                    return "bandit"
                if value in ("check_id", "extra"):
                    return "semgrep"
    except ijson.JSONError as exc:
        raise ReportError("$", f"is not JSON ({exc})") from None
    finally:
        stream.seek(0)
    if "runs" in keys or "$schema" in keys:
        return "sarif"
    if "dependencies" in keys:
        return "pip-audit"
    if "results" in keys and "generated_at" in keys:
        return "bandit"
    if "results" in keys:
        return "semgrep"
    raise ReportError("$", "is not SARIF, bandit, pip-audit or semgrep JSON")


def read(
    stream: IO[bytes],
    fmt: str | None = None,
    *,
    root: str | None = None,
    skipped: list[str] | None = None,
    validate: bool = True,
) -> Iterator[Raw]:
    """Every finding of a report (format detected unless given), streamed. What the scanner
    says it could not check (pip-audit's skipped dependencies) is appended to `skipped`."""
    fmt = fmt or detect(stream)
    if fmt == "sarif":
        return read_sarif(stream, root=root, validate=validate)
    if fmt == "bandit":
        return read_bandit(stream, root=root)
    if fmt == "pip-audit":
        return read_pip_audit(stream, skipped=skipped)
    if fmt == "semgrep":
        return read_semgrep(stream, root=root)
    raise ReportError("format", f"must be one of {', '.join(FORMATS)}")


def tool_of(stream: IO[bytes], fmt: str) -> str:
    """The scanning tool's name (SARIF: the first run's driver name)."""
    if fmt != "sarif":
        return fmt
    try:
        for name in ijson.items(stream, "runs.item.tool.driver.name"):
            return str(name)[:100]
    except ijson.JSONError:
        pass
    finally:
        stream.seek(0)
    return "sarif"


# -- SARIF ----------------------------------------------------------------------------------------


@cache
def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return loaded


def _handlers() -> dict[str, Any]:
    # Every $ref is internal; never fetch a schema from the network.
    return {"http": lambda uri: _schema(), "https": lambda uri: _schema()}


@cache
def _log_validator() -> Any:
    return fastjsonschema.compile(_schema(), handlers=_handlers(), detailed_exceptions=False)


@cache
def _result_validator() -> Any:
    s = _schema()
    sub = {"$schema": s["$schema"], "id": s["id"], "definitions": s["definitions"]}
    return fastjsonschema.compile(
        {**sub, "$ref": "#/definitions/result"}, handlers=_handlers(), detailed_exceptions=False
    )


def _validate(validator: Any, value: Any, where: str) -> None:
    try:
        validator(value)
    except fastjsonschema.JsonSchemaException as exc:
        path = str(getattr(exc, "message", exc)).replace("data", where, 1)
        raise ReportError(where, f"violates the SARIF 2.1.0 schema: {path}"[:500]) from None


def envelope(stream: IO[bytes]) -> dict[str, Any]:
    """The SARIF log's envelope: its version and each run's tool (driver, extensions, rules),
    validated against the full schema with the results left out (they are validated one by one
    as they stream). Read by ijson's C parser, which skips the results without building them."""
    try:
        version = next(iter(ijson.items(stream, "version")), None)
        stream.seek(0)
        tools = list(ijson.items(stream, "runs.item.tool", use_float=True))
    except ijson.JSONError as exc:
        raise ReportError("$", f"is not JSON ({exc})") from None
    finally:
        stream.seek(0)
    if version != "2.1.0":
        raise ReportError("version", "must be 2.1.0 (only SARIF 2.1.0 is read)")
    counts = None if len(tools) == 1 else _result_counts(stream)
    if counts is not None and len(counts) != len(tools):
        raise ReportError("runs", "every run must have a tool (SARIF 2.1.0 schema)")
    log = {"version": version, "runs": [{"tool": tool, "results": []} for tool in tools]}
    _validate(_log_validator(), log, "$")
    if counts is not None:
        log["result_counts"] = counts
    return log


@dataclass
class _Run:
    tool: str
    rules: dict[str, dict[str, Any]]
    by_index: list[dict[str, Any]]
    root: str | None


def _runs(log: dict[str, Any], root: str | None) -> list[_Run]:
    runs = []
    for run in log.get("runs") or []:
        driver = (run.get("tool") or {}).get("driver") or {}
        rules = list(driver.get("rules") or [])
        for ext in (run.get("tool") or {}).get("extensions") or []:
            rules.extend(ext.get("rules") or [])
        runs.append(
            _Run(
                str(driver.get("name") or "sarif")[:100],
                {str(r.get("id")): r for r in rules if r.get("id")},
                rules,
                root,
            )
        )
    return runs


def _text(message: Any) -> str:
    if isinstance(message, dict):
        return str(message.get("text") or message.get("markdown") or "")
    return ""


def _rule_of(run: _Run, result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    rule_id = result.get("ruleId")
    ref = result.get("rule") or {}
    index = result.get("ruleIndex", ref.get("index"))
    rule: dict[str, Any] = {}
    if isinstance(index, int) and 0 <= index < len(run.by_index):
        rule = run.by_index[index]
    rule_id = rule_id or ref.get("id") or rule.get("id") or "unknown"
    rule = rule or run.rules.get(str(rule_id)) or run.rules.get(str(rule_id).split("/")[0]) or {}
    return str(rule_id)[:200], rule


def _cwe_sarif(result: dict[str, Any], rule: dict[str, Any]) -> str | None:
    for taxon in result.get("taxa") or []:
        component = str(((taxon.get("toolComponent") or {}).get("name")) or "")
        if component.upper() == "CWE" or not component:
            found = cwe_of(taxon.get("id"), taxon.get("name"))
            if found:
                return found
    for rel in rule.get("relationships") or []:
        target = rel.get("target") or {}
        component = str(((target.get("toolComponent") or {}).get("name")) or "")
        if component.upper() == "CWE":
            found = cwe_of(target.get("id"))
            if found:
                return found
    tags = [*((result.get("properties") or {}).get("tags") or [])]
    tags += (rule.get("properties") or {}).get("tags") or []
    return cwe_of(*(t for t in tags if "cwe" in str(t).lower()))


def sarif_finding(run: _Run, result: dict[str, Any]) -> Raw:
    """A SARIF result (with its run's rules) as a Raw finding."""
    rule_id, rule = _rule_of(run, result)
    props = result.get("properties") or {}
    rule_props = rule.get("properties") or {}
    level = result.get("level") or (rule.get("defaultConfiguration") or {}).get("level")
    severity = sarif_severity(
        props.get("security-severity", rule_props.get("security-severity")), level
    )
    path, line, snippet = "", None, None
    locations = result.get("locations") or []
    if locations:
        physical = locations[0].get("physicalLocation") or {}
        uri = (physical.get("artifactLocation") or {}).get("uri") or ""
        path = normalise_path(str(uri), run.root)
        region = physical.get("region") or {}
        line = region.get("startLine")
        snippet = (region.get("snippet") or {}).get("text")
        if not snippet:
            snippet = ((physical.get("contextRegion") or {}).get("snippet") or {}).get("text")
    title = _text(rule.get("shortDescription")) or str(rule.get("name") or "") or rule_id
    help_text = _text(rule.get("help")) or _text(rule.get("fullDescription"))
    if rule.get("helpUri"):
        help_text = (help_text + "\n" if help_text else "") + str(rule["helpUri"])
    partial = result.get("partialFingerprints") or {}
    return Raw(
        tool=run.tool,
        rule_id=rule_id,
        severity=severity,
        title=_cut(title)[:500],
        description=_cut(_text(result.get("message")) or title),
        path=path[:1000],
        line=line if isinstance(line, int) else None,
        cwe_id=_cwe_sarif(result, rule),
        remediation=_cut(help_text) or None,
        snippet=snippet,
        partial=tuple(sorted((str(k), str(v)) for k, v in partial.items())),
        baseline_state=result.get("baselineState"),
    )


def read_sarif(
    stream: IO[bytes], *, root: str | None = None, validate: bool = True
) -> Iterator[Raw]:
    """Every result of every run, validated (unless `validate` is False: the caller validates
    the results elsewhere, see validate_results) and mapped (see the module docstring)."""
    log = envelope(stream)
    runs = _runs(log, root)
    validator = _result_validator()
    counts: list[int] | None = log.get("result_counts")
    run_index, left = 0, (counts[0] if counts else -1)
    try:
        for n, result in enumerate(ijson.items(stream, "runs.item.results.item", use_float=True)):
            if counts is not None:
                while left == 0:
                    run_index += 1
                    left = counts[run_index]
                left -= 1
            if validate:
                _validate(validator, result, f"results[{n}]")
            yield sarif_finding(runs[run_index], result)
    except ijson.JSONError as exc:
        raise ReportError("runs", f"is not JSON ({exc})") from None


def validate_results(path: str) -> tuple[str, str] | None:
    """Validate every result of a SARIF file against the schema's result definition; the
    first problem as (where, rule), or None. Run in a second process next to the import of a
    large file (ingest.py), so validation and import use both cores."""
    validator = _result_validator()
    with open(path, "rb") as stream:
        try:
            for n, result in enumerate(
                ijson.items(stream, "runs.item.results.item", use_float=True)
            ):
                _validate(validator, result, f"results[{n}]")
        except ReportError as exc:
            return exc.where, exc.rule
        except ijson.JSONError as exc:
            return "runs", f"is not JSON ({exc})"
    return None


def _result_counts(stream: IO[bytes]) -> list[int]:
    """How many results each run holds (to attribute streamed results to their run)."""
    counts: list[int] = []
    try:
        for prefix, event, _ in ijson.parse(stream):
            if prefix == "runs.item" and event == "start_map":
                counts.append(0)
            elif prefix == "runs.item.results.item" and event == "start_map":
                counts[-1] += 1
    finally:
        stream.seek(0)
    return counts


# -- native formats -------------------------------------------------------------------------------


def _items(stream: IO[bytes], prefix: str) -> Iterator[Any]:
    try:
        yield from ijson.items(stream, prefix, use_float=True)
    except ijson.JSONError as exc:
        raise ReportError(prefix.split(".")[0], f"is not JSON ({exc})") from None


def _ints(value: object) -> list[int]:
    return [v for v in value if isinstance(v, int)] if isinstance(value, list) else []


def bandit_severity(severity: object, confidence: object) -> str:
    """bandit's words, except that a HIGH severity issue found with HIGH confidence (shell
    injection with input, a known-bad call it is sure of) is critical."""
    word = word_severity(severity, "medium")
    sure = str(confidence or "").upper() == "HIGH"
    return "critical" if word == "high" and sure else word


def read_bandit(stream: IO[bytes], *, root: str | None = None) -> Iterator[Raw]:
    """bandit -f json: `results[]` with test_id, issue_severity, issue_cwe, code, line_number."""
    for n, item in enumerate(_items(stream, "results.item")):
        if not isinstance(item, dict) or "test_id" not in item:
            raise ReportError(f"results[{n}]", "must be a bandit result with a test_id")
        cwe = item.get("issue_cwe") or {}
        code = item.get("code")
        yield Raw(
            tool="bandit",
            rule_id=str(item["test_id"]),
            severity=bandit_severity(item.get("issue_severity"), item.get("issue_confidence")),
            title=_cut(item.get("test_name") or item["test_id"])[:500],
            description=_cut(item.get("issue_text")),
            path=normalise_path(str(item.get("filename") or ""), root)[:1000],
            line=item.get("line_number") if isinstance(item.get("line_number"), int) else None,
            cwe_id=cwe_of(cwe.get("id") if isinstance(cwe, dict) else cwe),
            remediation=_cut(item.get("more_info")) or None,
            snippet=flagged_lines(code, _ints(item.get("line_range")))
            if isinstance(code, str)
            else None,
        )


def read_semgrep(stream: IO[bytes], *, root: str | None = None) -> Iterator[Raw]:
    """semgrep --json: `results[]` with check_id, path, start.line, extra.{severity, message,
    lines, metadata.cwe, fix}."""
    for n, item in enumerate(_items(stream, "results.item")):
        if not isinstance(item, dict) or "check_id" not in item:
            raise ReportError(f"results[{n}]", "must be a semgrep result with a check_id")
        extra = item.get("extra") or {}
        meta = extra.get("metadata") or {}
        cwe = meta.get("cwe")
        lines = extra.get("lines")
        fix = extra.get("fix") or meta.get("fix")
        refs = meta.get("references") or []
        remediation = "\n".join(str(x) for x in ([fix] if fix else []) + list(refs)) or None
        fp = extra.get("fingerprint")
        usable = isinstance(fp, str) and fp and "requires login" not in fp
        yield Raw(
            tool="semgrep",
            rule_id=str(item["check_id"])[:200],
            severity=word_severity(extra.get("severity"), "medium"),
            title=_cut(str(item["check_id"]).rsplit(".", 1)[-1])[:500],
            description=_cut(extra.get("message")),
            path=normalise_path(str(item.get("path") or ""), root)[:1000],
            line=(item.get("start") or {}).get("line"),
            cwe_id=cwe_of(*(cwe if isinstance(cwe, list) else [cwe])),
            remediation=_cut(remediation) or None,
            snippet=lines if isinstance(lines, str) and lines != "requires login" else None,
            partial=(("semgrep", str(fp)),) if usable else (),
        )


def read_pip_audit(stream: IO[bytes], *, skipped: list[str] | None = None) -> Iterator[Raw]:
    """pip-audit -f json: `dependencies[]` with name, version, vulns[{id, fix_versions,
    aliases, description}]. pip-audit gives no severity: a known vulnerability is high.
    A dependency with a `skip_reason` was not audited: its reason goes to `skipped`."""
    for n, dep in enumerate(_items(stream, "dependencies.item")):
        if not isinstance(dep, dict) or "name" not in dep:
            raise ReportError(f"dependencies[{n}]", "must be a pip-audit dependency with a name")
        if dep.get("skip_reason") and skipped is not None:
            skipped.append(str(dep["skip_reason"])[:300])
        name, version = str(dep["name"]), str(dep.get("version") or "")
        for vuln in dep.get("vulns") or []:
            vid = str(vuln.get("id") or "unknown")
            fixes = [str(v) for v in vuln.get("fix_versions") or []]
            aliases = [str(a) for a in vuln.get("aliases") or []]
            fix = f"upgrade {name} to {' or '.join(fixes)}" if fixes else "no fixed version yet"
            yield Raw(
                tool="pip-audit",
                rule_id=vid[:200],
                severity="high",
                title=_cut(
                    f"{vid} in {name} {version}" + (f" ({', '.join(aliases)})" if aliases else "")
                )[:500],
                description=_cut(
                    vuln.get("description") or f"{name} {version} is affected by {vid}"
                ),
                path=f"requirements:{name.lower()}",
                line=None,
                cwe_id=None,
                remediation=fix,
                # the package, not its version: still vulnerable after a bump is the same finding
                snippet=f"{name.lower()} {vid}",
            )
