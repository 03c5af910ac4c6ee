"""Quantile sketches: DDSketch (the `ddsketch` library, 1% relative accuracy) and its stored form.

Stored form (version 1, little-endian): a header `<B d d d d d` (version, count, sum, min, max,
zero count), then the positive store and the negative store, each as `<I` (number of non-empty
bins) followed by that many `<i d` (bin key, weight). Only non-empty bins are written, so a
one-minute bucket of a steady series takes a few dozen bytes. Sketches merge exactly (bin by bin),
so a quantile over any window comes from merging its rollups' sketches.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from ddsketch import DDSketch

RELATIVE_ACCURACY = 0.01
VERSION = 1
_HEADER = struct.Struct("<Bddddd")
_COUNT = struct.Struct("<I")
_BIN = struct.Struct("<id")


def new_sketch(values: Iterable[float] = ()) -> DDSketch:
    """A fresh sketch holding `values`."""
    sketch = DDSketch(relative_accuracy=RELATIVE_ACCURACY)
    for value in values:
        sketch.add(value)
    return sketch


def _bins(store: Any) -> list[tuple[int, float]]:
    return [(store.offset + index, weight) for index, weight in enumerate(store.bins) if weight > 0]


def dumps(sketch: DDSketch) -> bytes:
    """The sketch's stored form (see the module docstring)."""
    raw: Any = sketch
    parts = [_HEADER.pack(VERSION, raw._count, raw._sum, raw._min, raw._max, raw._zero_count)]
    for store in (raw._store, raw._negative_store):
        bins = _bins(store)
        parts.append(_COUNT.pack(len(bins)))
        parts.extend(_BIN.pack(key, weight) for key, weight in bins)
    return b"".join(parts)


def loads(data: bytes) -> DDSketch:
    """A sketch from its stored form; ValueError when the bytes are not one."""
    if len(data) < _HEADER.size or data[0] != VERSION:
        raise ValueError("not a stored sketch (unknown version or too short)")
    sketch = new_sketch()
    raw: Any = sketch
    _, count, total, low, high, zeros = _HEADER.unpack_from(data, 0)
    offset = _HEADER.size
    for store in (raw._store, raw._negative_store):
        (n,) = _COUNT.unpack_from(data, offset)
        offset += _COUNT.size
        for _ in range(n):
            key, weight = _BIN.unpack_from(data, offset)
            offset += _BIN.size
            store.add(key, weight)
    raw._count, raw._sum, raw._min, raw._max, raw._zero_count = count, total, low, high, zeros
    return sketch


def merged(sketches: Iterable[DDSketch]) -> DDSketch:
    """One sketch holding everything the given ones hold."""
    out = new_sketch()
    for sketch in sketches:
        out.merge(sketch)
    return out


def quantile(sketch: DDSketch, q: float) -> float | None:
    """The q-quantile (0..1) the sketch estimates, None when it is empty."""
    if sketch.count == 0:
        return None
    value = sketch.get_quantile_value(q)
    return None if value is None else float(value)
