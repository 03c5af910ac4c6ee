"""Importing a report into a scan: stream, fingerprint, match against the scope, write in batches.

One pass over the report's findings (formats.py streams them): each is fingerprinted, matched
against the scope's known findings (deduplicate.Matcher) and written at once: a sighting for a
match, a finding row for a new one, an update only for a match whose severity or location
changed or that comes back (reopened). Findings that may continue a known one in a renamed file
wait for the end. Then a complete scan resolves what it no longer reports, and the scan gets its
seed 002 summary. Rows go out with executemany in batches, so memory holds the scope's index
(ids and fingerprints) and one batch, never the report.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import hashlib
import multiprocessing
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from pilothouse.access import Principal, require
from pilothouse.artifacts import service as artifacts
from pilothouse.artifacts.models import Artifact
from pilothouse.core.clock import utcnow
from pilothouse.environments import service as environments
from pilothouse.errors import ValidationFailed
from pilothouse.findings import bulk, formats, same_report
from pilothouse.findings.deduplicate import RESOLVABLE, Incoming, Known, Matcher
from pilothouse.findings.fingerprints import content_key, fingerprint, numbered
from pilothouse.findings.models import SecurityFinding, SecurityScan, security_finding_sightings
from pilothouse.findings.rules import DEFAULT_SLA_DAYS, SCAN_TYPES, SEVERITIES, sla_due, summary
from pilothouse.services import service as services
from pilothouse.services.models import Service

BATCH = 2000
FINDINGS: sa.Table = SecurityFinding.__table__  # type: ignore[assignment]
SIGHTINGS = security_finding_sightings
SIGHTING_COLUMNS = ("finding_id", "scan_id", "line")


#: From this size on, a SARIF file's results are validated in a second process while this one
#: imports them (the two halves of the work on two cores); smaller files are validated inline.
PARALLEL_CHECK_BYTES = 4 * 1024 * 1024
_checker: concurrent.futures.ProcessPoolExecutor | None = None


def _check_elsewhere(report: Path) -> asyncio.Future[tuple[str, str] | None]:
    """Validate the report's results in the checker process (spawned once, then kept)."""
    global _checker
    if _checker is None:
        _checker = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )
        atexit.register(_checker.shutdown, wait=False, cancel_futures=True)
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(_checker, formats.validate_results, str(report))


def scope_key(environment_id: uuid.UUID, scan_type: str, target: str, tool: str) -> str:
    """The dedup scope: findings of one tool's scans of one type of one target in one env."""
    raw = "\x1f".join((str(environment_id), scan_type, target, tool))
    return hashlib.sha256(raw.encode()).hexdigest()


def location_of(path: str, line: int | None) -> str | None:
    if not path:
        return None
    return f"{path}:{line}" if line else path


@dataclass
class Target:
    """Where a scan's findings belong."""

    environment_id: uuid.UUID
    service: Service | None
    artifact: Artifact | None
    name: str


async def resolve_target(
    session: AsyncSession,
    actor: Principal,
    *,
    environment: str,
    service: str | None,
    artifact: str | None,
    target: str | None,
) -> Target:
    """The environment, service and artifact a scan is about (artifact: a version of the
    service; a service is required with one). The target defaults to the service's name."""
    env = await environments.get_environment(session, actor, environment)
    svc = (
        await services.get_service(session, actor, service, environment=env.name)
        if service
        else None
    )
    if svc is not None and svc.environment_id != env.id:
        raise ValidationFailed("service", f"is not a service of environment {env.name}")
    art = None
    if artifact is not None and svc is None:
        # a version alone: the one service of the environment that has it
        found = (
            await session.scalars(
                sa.select(Artifact)
                .join(Service, Service.id == Artifact.service_id)
                .where(
                    Service.environment_id == env.id,
                    Service.deleted_at.is_(None),
                    Artifact.version == artifact,
                    Artifact.deleted_at.is_(None),
                )
                .limit(2)
            )
        ).all()
        if len(found) != 1:
            rule = "matches artifacts of several services" if found else "is not an artifact"
            raise ValidationFailed("artifact", f"{rule} in {env.name}: give the service")
        svc = await services.get_service(session, actor, str(found[0].service_id))
    if artifact is not None and svc is not None:
        art = await artifacts.get_by_version(session, actor, svc.id, artifact)
    name = target or (svc.name if svc is not None else None)
    if not name:
        raise ValidationFailed("target", "is required when no service is given")
    return Target(env.id, svc, art, name[:200])


async def create_scan(
    session: AsyncSession,
    actor: Principal,
    where: Target,
    *,
    scan_type: str,
    source: str,
    tool: str | None = None,
    complete: bool = True,
    status: str = "pending",
) -> SecurityScan:
    """A scan row (pending, or running for an import that starts at once)."""
    require(actor, "import_scans")
    if scan_type not in SCAN_TYPES:
        raise ValidationFailed("type", f"must be one of {', '.join(SCAN_TYPES)}")
    scan = SecurityScan(
        owner_id=actor.id,
        environment_id=where.environment_id,
        service_id=where.service.id if where.service else None,
        artifact_id=where.artifact.id if where.artifact else None,
        type=scan_type,
        target=where.name,
        tool=tool,
        source=source,
        complete=complete,
        status=status,
        started_at=utcnow(),
    )
    session.add(scan)
    await session.flush()
    return scan


@dataclass
class _State:
    """Per-import bookkeeping (counts only; rows leave in batches)."""

    scan: SecurityScan
    scope: str
    now: datetime
    sla_days: Mapping[str, int]
    native: bool = True  # PostgreSQL takes Python values; SQLite rows are converted (bulk.py)
    constants: dict[str, Any] = field(default_factory=dict)
    new_rows: list[tuple[Any, ...]] = field(default_factory=list)
    sightings: list[tuple[Any, ...]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    open_counts: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)


def _same(value: Any) -> Any:
    return value


def _constants(state: _State) -> dict[str, Any]:
    """What every new row of this import shares, converted once for the store."""
    value: Callable[[Any], Any] = _same if state.native else bulk.sqlite_value
    scan = state.scan
    return {
        "scan_id": value(scan.id),
        "environment_id": value(scan.environment_id),
        "service_id": value(scan.service_id),
        "type": scan.type,
        "false": value(False),
        "now": value(state.now),
        "due": {s: value(sla_due(state.now, s, state.sla_days)) for s in SEVERITIES},
    }


async def _load_known(session: AsyncSession, scope: str) -> dict[str, Known]:
    """The scope's findings: matcher entries, and a hash of (severity, path, line) each, to
    spot the ones a report changes (a hash, not the values: the index of 100,000 findings
    must stay small)."""
    known: dict[str, Known] = {}
    result = await session.stream(
        sa.select(
            FINDINGS.c.id,
            FINDINGS.c.fingerprint,
            FINDINGS.c.content_key,
            FINDINGS.c.status,
            FINDINGS.c.severity,
            FINDINGS.c.path,
            FINDINGS.c.line,
        ).where(FINDINGS.c.scope_key == scope)
    )
    async for part in result.partitions(5000):
        for fid, fp, ck, status, severity, path, line in part:
            known[fp] = Known(fid, fp, ck, status, hash((severity, path, line)))
    return known


async def _flush(session: AsyncSession, state: _State, *, force: bool = False) -> None:
    if state.new_rows and (force or len(state.new_rows) >= BATCH):
        await bulk.insert_rows(session, FINDINGS, NEW_COLUMNS, state.new_rows)
        state.new_rows.clear()
    if state.sightings and (force or len(state.sightings) >= BATCH):
        # after the new findings: a sighting refers to its finding
        if state.new_rows:
            await bulk.insert_rows(session, FINDINGS, NEW_COLUMNS, state.new_rows)
            state.new_rows.clear()
        await bulk.insert_rows(session, SIGHTINGS, SIGHTING_COLUMNS, state.sightings)
        state.sightings.clear()
    if state.updates and (force or len(state.updates) >= BATCH):
        for row in state.updates:
            fid = row.pop("id")
            if "severity" in row:  # the SLA follows the severity, from when it was first seen
                first = await session.scalar(
                    sa.select(FINDINGS.c.first_seen_at).where(FINDINGS.c.id == fid)
                )
                assert first is not None
                row["sla_due_at"] = sla_due(first, row["severity"], state.sla_days)
            await session.execute(sa.update(FINDINGS).where(FINDINGS.c.id == fid).values(**row))
        state.updates.clear()


#: The columns a new finding is written with, in order (the others take their defaults).
NEW_COLUMNS = (
    "id", "scan_id", "environment_id", "service_id", "scope_key", "fingerprint", "content_key",
    "type", "tool", "rule_id", "severity", "title", "description", "location", "path", "line",
    "cwe_id", "remediation", "status", "resolved", "reopened_count", "sla_due_at",
    "first_seen_at", "created_at",
)  # fmt: skip


def _new_row(state: _State, raw: formats.Raw, fp: str, ck: str | None) -> tuple[Any, ...]:
    """A new finding as a row of NEW_COLUMNS, values already in the store's form."""
    fid = uuid.uuid4()
    c = state.constants
    return (
        fid if state.native else fid.hex,
        c["scan_id"], c["environment_id"], c["service_id"], state.scope, fp, ck,
        c["type"], raw.tool[:100], raw.rule_id, raw.severity, raw.title or raw.rule_id,
        raw.description, location_of(raw.path, raw.line), raw.path or None, raw.line,
        raw.cwe_id, raw.remediation, "open", c["false"], 0, c["due"][raw.severity],
        c["now"], c["now"],
    )  # fmt: skip


def _add_new(state: _State, raw: formats.Raw, fp: str, ck: str | None) -> None:
    row = _new_row(state, raw, fp, ck)
    state.new_rows.append(row)
    state.sightings.append((row[0], state.constants["scan_id"], raw.line))
    state.changes["new"] += 1
    state.open_counts[raw.severity] += 1


def _add_match(
    state: _State,
    raw: formats.Raw,
    known: Known,
    *,
    renamed: tuple[str, str | None] | None = None,
) -> None:
    fid: Any = known.id
    state.sightings.append((fid if state.native else fid.hex, state.constants["scan_id"], raw.line))
    change: dict[str, Any] = {}
    if hash((raw.severity, raw.path or None, raw.line)) != known.shape:
        change.update(
            severity=raw.severity,
            path=raw.path or None,
            line=raw.line,
            location=location_of(raw.path, raw.line),
        )
    if renamed is not None:
        change["fingerprint"], change["content_key"] = renamed
        state.changes["renamed"] += 1
    status = known.status
    if status == "resolved":
        change.update(
            status="open",
            resolved=False,
            resolved_at=None,
            resolved_by_scan_id=None,
            reopened_count=FINDINGS.c.reopened_count + 1,
        )
        state.changes["reopened"] += 1
        status = "open"
    if change:
        state.updates.append({"id": known.id, **change})
        state.changes["rewritten"] += 1
    else:
        state.changes["unchanged"] += 1
    if status == "open":
        state.open_counts[raw.severity] += 1


async def import_report(
    session: AsyncSession,
    actor: Principal,
    scan: SecurityScan,
    report: Path,
    *,
    fmt: str | None = None,
    root: str | None = None,
    sla_days: Mapping[str, int] = DEFAULT_SLA_DAYS,
    duration_ms: int | None = None,
) -> SecurityScan:
    """Read `report` into `scan` (see the module docstring); a report that is not valid raises
    ValidationFailed naming the part and the rule, and nothing of it is written."""
    require(actor, "import_scans")
    started = time.monotonic()
    checking: asyncio.Future[tuple[str, str] | None] | None = None
    with report.open("rb") as stream:
        try:
            fmt = fmt or formats.detect(stream)
            tool = scan.tool or formats.tool_of(stream, fmt)
        except formats.ReportError as exc:
            raise ValidationFailed(f"report {exc.where}", exc.rule) from None
        scan.tool, scan.format = tool[:100], fmt
        scope = scope_key(scan.environment_id, scan.type, scan.target, scan.tool)
        scan.report_sha256 = same_report.digest(report)
        previous = await same_report.previous_same(session, scan, scan.report_sha256)
        if previous is not None:
            counts, open_counts, changes = await same_report.replay(
                session, scan, previous, scope, utcnow()
            )
            elapsed = int((time.monotonic() - started) * 1000)
            scan.summary = summary(counts, open_counts, duration_ms or elapsed)
            scan.changes = changes
            scan.status, scan.completed_at = "completed", utcnow()
            return scan
        if fmt == "sarif" and report.stat().st_size >= PARALLEL_CHECK_BYTES:
            checking = _check_elsewhere(report)
        known = await _load_known(session, scope)
        matcher = Matcher(known)
        state = _State(scan, scope, utcnow(), sla_days)
        state.native = (await session.connection()).dialect.name == "postgresql"
        state.constants = _constants(state)
        occurrences: Counter[str] = Counter()
        seen_here: Counter[int] = Counter()
        deferred: list[tuple[formats.Raw, str, str | None]] = []
        skipped: list[str] = []
        try:
            reading = formats.read(
                stream, fmt, root=root, skipped=skipped, validate=checking is None
            )
            for raw in reading:
                base = fingerprint(raw.rule_id, raw.path, raw.line, raw.snippet, dict(raw.partial))
                occurrences[base] += 1
                fp = numbered(base, occurrences[base])
                ck_base = content_key(raw.rule_id, raw.snippet)
                ck = None
                if ck_base is not None:
                    where = hash((ck_base, raw.path))  # an int key: the counter stays small
                    seen_here[where] += 1
                    ck = numbered(ck_base, seen_here[where])
                state.counts[raw.severity] += 1
                verdict, found = matcher.see(Incoming(fp, ck))
                if verdict == "matched":
                    hit = known[fp]
                    _add_match(state, raw, hit)
                elif verdict == "deferred":
                    deferred.append((raw, fp, ck))
                else:
                    _add_new(state, raw, fp, ck)
                await _flush(session, state)
        except formats.ReportError as exc:
            if checking is not None:
                checking.cancel()
            raise ValidationFailed(f"report {exc.where}", exc.rule) from None
    if checking is not None:
        problem = await checking
        if problem is not None:  # nothing of the report is kept: the caller rolls back
            raise ValidationFailed(f"report {problem[0]}", problem[1])
    by_id = {k.id: k for k in known.values()} if deferred else {}
    settled = matcher.settle([Incoming(fp, ck) for _, fp, ck in deferred])
    for (raw, fp, ck), found in zip(deferred, settled, strict=True):
        if found is None:
            _add_new(state, raw, fp, ck)
        else:
            _add_match(state, raw, by_id[found], renamed=(fp, ck))
    await _flush(session, state, force=True)
    if skipped:
        # What was not checked may still be there: such a scan resolves nothing.
        scan.complete = False
        scan.error_message = (
            f"{len(skipped)} item(s) not checked, so nothing was resolved: " + "; ".join(skipped)
        )[:4000]
    if scan.complete:
        gone = [k.id for k in matcher.unmatched() if k.status in RESOLVABLE]
        for i in range(0, len(gone), 1000):
            await session.execute(
                sa.update(FINDINGS)
                .where(FINDINGS.c.id.in_(gone[i : i + 1000]))
                .values(
                    status="resolved",
                    resolved=True,
                    resolved_at=state.now,
                    resolved_by_scan_id=scan.id,
                )
            )
        state.changes["resolved"] = len(gone)
    elapsed = int((time.monotonic() - started) * 1000)
    scan.summary = summary(state.counts, state.open_counts, duration_ms or elapsed)
    scan.changes = {
        k: state.changes.get(k, 0)
        for k in ("new", "unchanged", "rewritten", "reopened", "renamed", "resolved")
    }
    scan.status, scan.completed_at = "completed", utcnow()
    return scan
