"""The JSON push batch (`POST /metrics/ingest`) read in one pass over the decoded body.

Guarantee: a batch is accepted exactly when the `IngestBatch` model accepts it, with the same
values, and a refused batch gets the model's errors (so the 422 names the same field and rule).

How: the body's JSON text is decoded and checked in one pass (`check_fast_json`, pydantic-core's
parser, about 1.5x faster than `json.loads` and then the check) against `FastBatch`, TypedDicts
that state the model's rules as pydantic-core constraints (the same field types; the tag limits
that `check_tags` enforces in Python are stated as length constraints). That makes no model
instance and calls no Python validator per sample: about 3x faster than the model on a
5,000-sample batch. When it refuses, the text is decoded with `json.loads` and checked again
(`check_fast`, then the model), and the model's error is the one raised; should the model ever
accept what the check refused, the model's result is used. Table tests and hypothesis
properties hold the three to the same answers (tests/metrics/test_push.py).

Then the samples become the store's three columns (series id, epoch ms, value) in one pass,
with no Sample, tag dict or row tuple per sample: a series is recognised by `push_key` (name,
tag keys, tag values as sent) in a memory of committed ids per environment, and the rows are
the ones `write_samples_in` would write for the Samples with the environment tag set
(`Sample`s are only made for series the process does not know yet). PostgreSQL gets the columns
as one binary COPY buffer packed in C; SQLite one executemany over them.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, NamedTuple, NotRequired

from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import TypedDict

from pilothouse.metrics.ingest import MAX_TAG_LENGTH, MAX_TAGS
from pilothouse.metrics.samples import (
    Sample,
    bulk_insert_columns,
    known_ids,
    pending_ids,
    series_ids,
)
from pilothouse.metrics.schemas import IngestBatch, MetricName, Source

#: Tags as `check_tags` allows them, stated as constraints.
FastTags = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH)],
        Annotated[str, Field(max_length=MAX_TAG_LENGTH)],
    ],
    Field(max_length=MAX_TAGS),
]


@with_config(ConfigDict(extra="forbid"))
class FastSample(TypedDict):
    """`SampleIn`'s rules; an absent optional field takes the model's default when read."""

    name: MetricName
    tags: NotRequired[FastTags]
    value: float
    timestamp: NotRequired[AwareDatetime | None]
    unit: NotRequired[Annotated[str, Field(max_length=32)]]
    source: NotRequired[Source]


@with_config(ConfigDict(extra="forbid"))
class FastBatch(TypedDict):
    """`IngestBatch`'s rules."""

    environment: NotRequired[str | None]
    samples: Annotated[list[FastSample], Field(max_length=10_000)]


_FAST = TypeAdapter(FastBatch)


def check_fast(document: Any) -> FastBatch | None:
    """The batch in a decoded JSON document by the fast check alone; None when it refuses."""
    try:
        return _FAST.validate_python(document)
    except ValidationError:
        return None


def check_fast_json(raw: bytes) -> FastBatch | None:
    """The batch in a JSON text by the fast check alone, decoded and checked in one pass by
    pydantic-core's parser (no intermediate document); None when it refuses, and when the text
    may decode differently with `json.loads`: pydantic-core reads an integer too large for a
    float as infinite where the model refuses it, so a batch with an infinite value is left to
    the decoded path (`check_fast` on what `json.loads` makes of it). Otherwise it accepts
    exactly what that path accepts, with the same values (tests/metrics/test_push.py)."""
    try:
        batch = _FAST.validate_json(raw)
    except ValidationError:
        return None
    if any(map(math.isinf, [sample["value"] for sample in batch["samples"]])):
        return None
    return batch


def read_batch(document: Any) -> FastBatch:
    """The batch in a decoded JSON document; the model's ValidationError when it is not one."""
    checked = check_fast(document)
    if checked is not None:
        return checked
    model = IngestBatch.model_validate(document)  # raises the model's error
    return {
        "environment": model.environment,
        "samples": [FastSample(**s.model_dump()) for s in model.samples],  # type: ignore[typeddict-item]
    }


#: A pushed series as this process recognises it inside one environment: its name alone (no
#: tags), else its name, its tag keys, then its tag values, all as sent. One flat tuple of
#: strings: no tuple per tag, and no environment tag to add (the memory is per environment).
PushKey = str | tuple[str, ...]


class Columns(NamedTuple):
    """A checked batch in the store's terms: series ids, epoch ms and values, one entry per
    finite sample in order; `late` lists (entry, key, sample index) of the entries whose series
    the memory did not know (their id is 0 until it is known)."""

    series: list[int]
    times: list[int]
    values: list[float]
    late: list[tuple[int, PushKey, int]]


def push_key(sample: FastSample) -> PushKey:
    """The key of a checked sample's series in its environment's memory."""
    tags = sample.get("tags")
    return (sample["name"], *tags.keys(), *tags.values()) if tags else sample["name"]


def to_columns(
    samples: Sequence[FastSample], now: datetime, known: Mapping[PushKey, int]
) -> Columns:
    """The store's columns of checked samples (one pass, no object per sample beyond the
    key): a sample without a timestamp is at `now`; non-finite values (NaN, +-Inf) are left
    out, as `write_samples` leaves them; ids come from `known`."""
    now_ms = round(now.timestamp() * 1000)
    isfinite = math.isfinite
    get = known.get
    series: list[int] = []
    times: list[int] = []
    values: list[float] = []
    late: list[tuple[int, PushKey, int]] = []
    add_series, add_time, add_value = series.append, times.append, values.append
    for index, sample in enumerate(samples):
        value = sample["value"]
        if not isfinite(value):
            continue
        tags = sample.get("tags")
        # `push_key(sample)` inline: no function call per sample in this hot loop (the tests
        # hold the two equal).
        key: PushKey = (sample["name"], *tags.keys(), *tags.values()) if tags else sample["name"]
        series_id = get(key)
        if series_id is None:
            late.append((len(series), key, index))
            series_id = 0
        add_series(series_id)
        at = sample.get("timestamp")
        add_time(now_ms if at is None else round(at.timestamp() * 1000))
        add_value(value)
    return Columns(series, times, values, late)


def describe(sample: FastSample, environment: str, now: datetime) -> Sample:
    """The Sample a checked sample stands for in `environment` (its tag forced to it: a push
    cannot write elsewhere)."""
    return Sample(
        sample["name"],
        {**sample.get("tags", {}), "environment": environment},
        sample["value"],
        sample.get("timestamp") or now,
        unit=sample.get("unit", ""),
        source=sample.get("source", "application"),
    )


async def write_pushed_in(
    session: AsyncSession,
    dialect: str,
    samples: Sequence[FastSample],
    environment: str,
    environment_id: uuid.UUID,
    now: datetime,
) -> int:
    """Store checked samples in an environment, inside the caller's transaction; returns how
    many were written. The same rows `write_samples_in` writes for their Samples (see
    `describe`), made in one pass: series this process knows in the environment are found by
    `push_key`; the others are looked up or created by their canonical key, as there."""
    known = known_ids(session, f"push:{environment}")
    columns = to_columns(samples, now, known)
    if not columns.series:
        return 0
    if columns.late:
        pending = pending_ids(session, known)
        first: dict[PushKey, Sample] = {}
        for _, key, index in columns.late:
            if key not in pending and key not in first:
                first[key] = describe(samples[index], environment, now)
        if first:
            pending.update(await series_ids(session, dialect, first, environment_id))
        ids = columns.series
        for position, key, _ in columns.late:
            ids[position] = pending[key]
    await bulk_insert_columns(session, dialect, columns.series, columns.times, columns.values)
    return len(columns.series)
