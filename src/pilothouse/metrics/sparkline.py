"""A terminal sparkline: values drawn with the eight block characters, pure."""

from __future__ import annotations

from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 60) -> str:
    """One character per value (the last `width` values, averaged into `width` cells when there
    are more); equal values draw a flat low line."""
    if not values:
        return ""
    if len(values) > width:
        size = len(values) / width
        cells = []
        for i in range(width):
            part = values[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)]
            cells.append(sum(part) / len(part))
        values = cells
    low, high = min(values), max(values)
    if high == low:
        return BLOCKS[0] * len(values)
    scale = (len(BLOCKS) - 1) / (high - low)
    return "".join(BLOCKS[round((v - low) * scale)] for v in values)
