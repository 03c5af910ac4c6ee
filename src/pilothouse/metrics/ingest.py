"""Push ingestion formats: the JSON batch and the Prometheus text exposition format.

The Prometheus text is parsed with `prometheus_client`'s parser (as a Pushgateway accepts it):
each sample of each family becomes one Sample named as exposed (`http_requests_total`,
`latency_seconds_bucket` with its `le` tag, ...), its labels as tags, its own timestamp or the
push time, and the family's unit when it declares one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from pilothouse.metrics.samples import Sample

#: Tags a series may carry at most, and their lengths (a push is untrusted input).
MAX_TAGS = 20
MAX_TAG_LENGTH = 200


def parse_prometheus(
    text: str, now: datetime, extra_tags: Mapping[str, str] | None = None
) -> list[Sample]:
    """Samples from a Prometheus text exposition; ValueError (with the parser's reason) when the
    text is not one."""
    extra = dict(extra_tags or {})
    out: list[Sample] = []
    try:
        for family in text_string_to_metric_families(text):
            unit = getattr(family, "unit", "") or ""
            for sample in family.samples:
                tags = {**sample.labels, **extra}
                check_tags(tags)
                at = (
                    datetime.fromtimestamp(float(sample.timestamp), UTC)
                    if sample.timestamp is not None
                    else now
                )
                out.append(Sample(sample.name, tags, float(sample.value), at, unit=unit))
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"not Prometheus text exposition format: {exc}") from None
    return out


def check_tags(tags: Mapping[str, str]) -> None:
    """ValueError when tags are too many or too long."""
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags per series, got {len(tags)}")
    for key, value in tags.items():
        if not key or len(key) > MAX_TAG_LENGTH or len(str(value)) > MAX_TAG_LENGTH:
            raise ValueError(f"tag {key[:40]!r}: keys and values are 1-{MAX_TAG_LENGTH} characters")
