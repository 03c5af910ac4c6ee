"""Pull: scrape every running replica's `/metrics` (Prometheus text format) into the store.

Discovery is automatic: every replica pilothouse runs (status `running`, with an HTTP port) of a
live, running service is a target, at `http://127.0.0.1:<port><path>`. The path, interval and
timeout come from the service's typed `health_check.metrics` (healthchecks/spec.py ScrapeSpec:
`/metrics`, 15 s, 5 s by default; `enabled: false` turns a service's scraping off), validated
when the service is written like the rest of the spec.

The text is parsed with prometheus_client's parser (`text_string_to_metric_families`); every
finite sample becomes a `Sample` tagged with the target's environment, service and replica
(labels of the app kept; `source` application), plus Prometheus's own per-target series `up`,
`scrape_duration_seconds` and `scrape_samples_scraped`. The requests/errors counters found
(builtin.py) update the replica's figures row, which feeds the health columns and rules.

Loops (registered in worker.CAPABILITIES): `metrics.scrape` runs once per 5 s slot across workers
(the worker that claims the slot scrapes every target due in it: a target with interval I is due
in the slot holding its next multiple of I, shifted by a stable per-target offset, so no state is
needed to hand over between workers); `metrics.builtin` runs once per 15 s slot and writes the
built-in samples (builtin.py) and drops the figures of replicas not scraped for a day.
Off when PILOTHOUSE_METRICS_SCRAPE_ENABLED is false.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.core import probes
from pilothouse.core.clock import utcnow
from pilothouse.core.db import Database
from pilothouse.core.leases import slot_start
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime
from pilothouse.environments.models import Environment
from pilothouse.healthchecks.spec import ScrapeSpec
from pilothouse.healthchecks.spec import parse as parse_spec
from pilothouse.metrics import builtin
from pilothouse.metrics.samples import Sample, write_samples
from pilothouse.replicas.models import Replica
from pilothouse.services.models import Service

log = get_logger("pilothouse.metrics")

#: Seconds per scrape slot (the loop's interval; PILOTHOUSE_LOOP_INTERVALS can change it).
TICK = 5.0
#: Seconds per built-in samples slot.
BUILTIN_EVERY = 15.0
#: Scrapes running at the same time.
CONCURRENCY = 50
#: How long the figures of a replica no longer scraped are kept.
FIGURES_KEPT = timedelta(days=1)
#: Largest exposition read from one target.
MAX_BYTES = 10 * 1024 * 1024
#: What a scrape asks for: the text format (0.0.4), which prometheus_client's parser reads.
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


@dataclass(frozen=True)
class Target:
    """One replica to scrape."""

    replica_id: uuid.UUID
    service_id: uuid.UUID
    url: str
    interval: float
    timeout: float
    tags: dict[str, str] = field(default_factory=dict)


def offset(key: str, interval: float) -> float:
    """A stable shift inside the interval for each target (spreads scrapes over time)."""
    return (zlib.crc32(key.encode()) % max(1, int(interval * 1000))) / 1000


def due(key: str, interval: float, slot_start: float, slot: float) -> bool:
    """Whether a target with this interval is scraped in the slot [slot_start, +slot): its
    scrape times are `offset + k * interval`. An interval shorter than a slot: every slot."""
    if interval <= slot:
        return True
    shift = offset(key, interval)
    first = math.ceil((slot_start - shift) / interval) * interval + shift
    return first < slot_start + slot


async def discover(db: Database) -> list[Target]:
    """Every running replica with an HTTP port of a live running service whose scraping is on."""
    async with db.session(write=False) as session:
        rows = list(
            await session.execute(
                sa.select(Replica.id, Replica.ports, Service, Environment.name)
                .join(Service, Service.id == Replica.service_id)
                .join(Environment, Environment.id == Service.environment_id)
                .where(
                    Replica.status == "running",
                    Service.deleted_at.is_(None),
                    Service.status == "running",
                )
            )
        )
    targets: list[Target] = []
    specs: dict[uuid.UUID, ScrapeSpec] = {}
    for replica_id, ports, service, environment in rows:
        port = (ports or {}).get("http")
        if not port:
            continue
        spec = specs.get(service.id)
        if spec is None:
            spec = specs[service.id] = parse_spec(service.health_check).metrics
        if not spec.enabled:
            continue
        targets.append(
            Target(
                replica_id=replica_id,
                service_id=service.id,
                url=f"http://127.0.0.1:{int(port)}{spec.path}",
                interval=spec.interval,
                timeout=spec.timeout,
                tags={
                    "environment": environment,
                    "service": service.name,
                    "replica": str(replica_id),
                },
            )
        )
    return targets


def parse(
    text: str, tags: dict[str, str], at: datetime, *, key: str | None = None
) -> tuple[list[Sample], builtin.Counters]:
    """Samples and recognised counters of one exposition (prometheus_client's parser).
    Labels of the app are kept; the target's tags win over labels of the same name, as
    Prometheus's `honor_labels: false` does (the app's value moves to `exported_<name>`).

    With a `key` (one per target), what the parser made of each line is remembered, as
    Prometheus's scrape cache does: the next exposition of that target with the same lines
    except for values and timestamps (the usual case) reuses it and only reads the values.
    Any other change, and any line the reuse does not read exactly as the parser would, goes
    through the parser again."""
    if key is not None:
        shape = _SHAPES.get(key)
        if shape is not None and shape.tags == tags:
            reused = _reuse(shape, text, at)
            if reused is not None:
                return reused
    families = list(text_string_to_metric_families(text))
    samples: list[Sample] = []
    reserved = set(tags)
    entries: list[_Entry] = []
    for family in families:
        for s in family.samples:
            labels = s.labels
            if not reserved.isdisjoint(labels):
                labels = {(f"exported_{k}" if k in reserved else k): v for k, v in labels.items()}
            merged = {**labels, **tags}
            entries.append(_Entry(s.name, merged, family.unit or "", s.labels))
            if not math.isfinite(s.value):
                continue
            when = at
            if s.timestamp is not None:
                when = datetime.fromtimestamp(float(s.timestamp), UTC)
            samples.append(Sample(s.name, merged, float(s.value), when, family.unit or ""))
    if key is not None:
        _remember(key, text, tags, entries)
    return samples, builtin.pick_counters(families)


@dataclass(frozen=True)
class _Entry:
    """What the parser made of one sample line."""

    name: str
    tags: dict[str, str]
    unit: str
    labels: dict[str, str]


@dataclass(frozen=True)
class _Shape:
    """An exposition's lines with each sample line cut before its value, and their entries."""

    tags: dict[str, str]
    skeleton: list[str]
    entries: list[_Entry]
    counted: list[int]  # indexes of the entries `builtin.counters_of` reads


#: Shapes of the targets' last expositions (cleared when there are more than this).
SHAPES_KEPT = 20_000
_SHAPES: dict[str, _Shape] = {}


def _cut(text: str) -> tuple[list[str], list[str]] | None:
    """(skeleton, value parts): every line stripped, a sample line cut to the part before its
    value (kept in the skeleton) and the rest (value and optional timestamp). None when a line
    is one the cut may not read exactly as the parser (an exemplar, a stray field)."""
    skeleton: list[str] = []
    rest: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line[0] == "#":
            skeleton.append(line)
            continue
        end = line.rfind("}")
        if end < 0:
            parts = line.split()
            head, tail = parts[0], parts[1:]
        else:
            head, tail = line[: end + 1], line[end + 1 :].split()
        if not 1 <= len(tail) <= 2 or " # " in line:
            return None
        skeleton.append(head)
        rest.append(line[len(head) :])
    return skeleton, rest


def _remember(key: str, text: str, tags: dict[str, str], entries: list[_Entry]) -> None:
    cut = _cut(text)
    if cut is None or len(cut[1]) != len(entries):
        _SHAPES.pop(key, None)
        return
    skeleton = cut[0]
    heads = [line for line in skeleton if line and line[0] != "#"]
    for head, entry in zip(heads, entries, strict=True):
        name = head.split("{", 1)[0].strip()
        if entry.name not in (name, f"{name}_total"):
            _SHAPES.pop(key, None)  # e.g. a name given as __name__: parse every time
            return
    if len(_SHAPES) >= SHAPES_KEPT:
        _SHAPES.clear()
    counted = [i for i, e in enumerate(entries) if e.name in builtin.KNOWN_NAMES]
    _SHAPES[key] = _Shape(dict(tags), skeleton, entries, counted)


def _reuse(shape: _Shape, text: str, at: datetime) -> tuple[list[Sample], builtin.Counters] | None:
    """The exposition read with a shape of the same lines, in one pass; None when a line
    differs or a value is not one the parser would read the same way."""
    lines = text.split("\n")
    skeleton = shape.skeleton
    if len(lines) != len(skeleton):
        return None
    entries = shape.entries
    samples: list[Sample] = []
    values: list[float] = []
    append = samples.append
    make = tuple.__new__  # a Sample without the Python-level __new__ call
    isfinite = math.isfinite
    n = 0
    try:
        for raw, expected in zip(lines, skeleton, strict=True):
            line = raw.strip()
            if not line or line[0] == "#":
                if line != expected:
                    return None
                continue
            if not expected or expected[0] == "#" or not line.startswith(expected):
                return None
            rest = line[len(expected) :]
            if expected[-1] != "}" and rest[:1] not in (" ", "\t"):
                return None  # the name goes on: another series
            if "_" in rest:
                return None  # float() reads 1_000; the parser refuses it
            parts = rest.split()
            entry = entries[n]
            n += 1
            value = float(parts[0])
            values.append(value)
            if len(parts) == 1:
                when = at
            elif len(parts) == 2:
                when = datetime.fromtimestamp(float(parts[1]) / 1000, UTC)
            else:
                return None
            if isfinite(value):
                append(
                    make(Sample, (entry.name, entry.tags, value, when, entry.unit, "application"))
                )
    except (ValueError, OverflowError, OSError, IndexError):
        return None
    if n != len(entries):
        return None
    counted = ((entries[i].name, entries[i].labels, values[i]) for i in shape.counted)
    return samples, builtin.counters_of(counted)


@dataclass
class Outcome:
    target: Target
    at: datetime
    up: bool
    detail: str | None
    samples: list[Sample]
    counters: builtin.Counters
    seconds: float


async def scrape_one(target: Target) -> Outcome:
    """Fetch and parse one target; a failure is an outcome with up=False and the reason.
    The fetch uses core/probes.py's small HTTP client (httpx's async pool costs several times
    the CPU per request here: docs/benchmarks.md)."""
    at = utcnow()
    started = time.perf_counter()
    try:
        status, body = await probes.http_get(
            target.url, timeout=target.timeout, accept=ACCEPT, max_bytes=MAX_BYTES
        )
        if status != 200:
            raise ValueError(f"HTTP {status}")
        text = body.decode("utf-8", errors="replace")
        samples, counters = parse(text, target.tags, at, key=f"{target.replica_id} {target.url}")
    except TimeoutError:
        return _failed(target, at, "timeout", started)
    except (OSError, ValueError) as exc:
        return _failed(target, at, str(exc) or type(exc).__name__, started)
    return Outcome(target, at, True, None, samples, counters, time.perf_counter() - started)


def _failed(target: Target, at: datetime, reason: str, started: float) -> Outcome:
    return Outcome(
        target, at, False, reason[:300], [], builtin.Counters(), time.perf_counter() - started
    )


def target_series(outcome: Outcome) -> list[Sample]:
    """Prometheus's synthetic series for each target: up, scrape duration, samples scraped."""
    tags, at = outcome.target.tags, outcome.at
    return [
        Sample("up", tags, 1.0 if outcome.up else 0.0, at, "", "application"),
        Sample("scrape_duration_seconds", tags, outcome.seconds, at, "seconds", "application"),
        Sample("scrape_samples_scraped", tags, float(len(outcome.samples)), at, "", "application"),
    ]


async def scrape(db: Database, targets: Sequence[Target]) -> list[Outcome]:
    """Scrape `targets` (at most CONCURRENCY at a time), write their samples and figures."""
    if not targets:
        return []
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(target: Target) -> Outcome:
        async with gate:
            return await scrape_one(target)

    outcomes = await asyncio.gather(*(one(t) for t in targets))
    samples = [s for o in outcomes for s in (*o.samples, *target_series(o))]
    await write_samples(db, samples)
    await builtin.record_figures(
        db,
        [
            builtin.Scraped(
                o.target.replica_id, o.target.service_id, o.at, o.up, o.detail, o.counters
            )
            for o in outcomes
        ],
    )
    return list(outcomes)


async def scrape_due(db: Database, slot_start: float, slot: float = TICK) -> list[Outcome]:
    """Discover the targets and scrape those due in the slot starting at `slot_start`."""
    targets = [
        t for t in await discover(db) if due(str(t.replica_id), t.interval, slot_start, slot)
    ]
    return await scrape(db, targets)


def loops(rt: Runtime) -> list[Loop]:
    if not rt.settings.metrics_scrape_enabled:
        return []
    every = float(rt.settings.loop_intervals.get("metrics.scrape", TICK))
    builtin_every = float(rt.settings.loop_intervals.get("metrics.builtin", BUILTIN_EVERY))
    # The replica health columns come from the figures this capability keeps.
    rt.hooks("replica_figures").append(builtin.figures_of)

    async def scrape_slot() -> None:
        now = time.time()
        outcomes = await scrape_due(rt.db, now - now % every, every)
        if outcomes:
            down = sum(1 for o in outcomes if not o.up)
            log.debug("scraped", targets=len(outcomes), down=down)

    async def builtin_slot() -> None:
        # The probes of the slot that just ended: (end - one slot, end].
        end = slot_start(utcnow(), timedelta(seconds=builtin_every))
        samples = await builtin.builtin_samples(rt.db, end - timedelta(seconds=builtin_every), end)
        await write_samples(rt.db, samples)
        # Figures of replicas no longer scraped (stopped, gone) are kept a day, then dropped.
        await builtin.prune_figures(rt.db, end - FIGURES_KEPT)

    return [
        Loop("metrics.scrape", scrape_slot, TICK, once=True),
        Loop("metrics.builtin", builtin_slot, BUILTIN_EVERY, once=True),
    ]
