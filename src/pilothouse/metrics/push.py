"""The JSON push batch (`POST /metrics/ingest`) read in one pass over the decoded body.

Guarantee: a batch is accepted exactly when the `IngestBatch` model accepts it, with the same
values, and a refused batch gets the model's errors (so the 422 names the same field and rule).

How: the decoded body is checked against `FastBatch`, TypedDicts that state the model's rules as
pydantic-core constraints (the same field types; the tag limits that `check_tags` enforces in
Python are stated as length constraints). That makes no model instance and calls no Python
validator per sample: about 3x faster than the model on a 5,000-sample batch. When it refuses,
the model validates the document and its error is the one raised; should the model ever accept
what the check refused, the model's result is used. Table tests and a hypothesis property hold
the two to the same answers (tests/metrics/test_push.py).

Then each sample becomes a store point, (series identity, epoch ms, value), with no Sample or
tag dict per sample: the identity is the one `write_samples_in` would make of the Sample with
the environment tag set (`Sample`s are only made for series the process does not know yet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, NotRequired

from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from pilothouse.metrics.ingest import MAX_TAG_LENGTH, MAX_TAGS
from pilothouse.metrics.samples import Point, Sample
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


def to_points(
    samples: Sequence[FastSample], environment: str, now: datetime
) -> tuple[list[Point], Callable[[int], Sample]]:
    """Store points of checked samples in `environment` (its tag set on every one, as a push
    cannot write elsewhere; a sample without a timestamp is at `now`), and the Sample of
    points[i] for the series the store does not know yet."""
    env_tag = ("environment", environment)
    now_ms = round(now.timestamp() * 1000)
    points: list[Point] = []
    append = points.append
    for sample in samples:
        tags = sample.get("tags")
        if not tags:
            items: tuple[tuple[str, str], ...] = (env_tag,)
        elif "environment" in tags:
            items = tuple({**tags, "environment": environment}.items())
        else:
            items = (*tags.items(), env_tag)
        at = sample.get("timestamp")
        append(
            (
                (sample["name"], items),
                now_ms if at is None else round(at.timestamp() * 1000),
                sample["value"],
            )
        )

    def describe(index: int) -> Sample:
        sample = samples[index]
        return Sample(
            sample["name"],
            {**sample.get("tags", {}), "environment": environment},
            sample["value"],
            sample.get("timestamp") or now,
            unit=sample.get("unit", ""),
            source=sample.get("source", "application"),
        )

    return points, describe
