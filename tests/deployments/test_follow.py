"""Issue 13.11: the follow output collapses repeated lines and states the outcome first and last."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.deployments.follow import Collapser, collapse, outcome_line


def _line(message: str, second: int = 0, level: str = "info", source: str = "deploy") -> Any:
    return {
        "timestamp": f"2026-12-01T17:{second // 60:02d}:{second % 60:02d}+00:00",
        "level": level,
        "source": source,
        "message": message,
    }


R503 = "replica 1a2b3c4d not ready: HTTP 503"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], []),
        ([_line("a")], ["17:00:00 info  [deploy] a"]),
        (
            [_line("a", 0), _line("a", 1)],
            ["17:00:00 info  [deploy] a", "17:00:01 info  [deploy] a"],
        ),  # two in a row are shown as they are
        (
            [_line("start")] + [_line(R503, s) for s in range(1, 97)] + [_line("failed", 99)],
            [
                "17:00:00 info  [deploy] start",
                f"17:00:01 info  [deploy] {R503}",
                "... x 96 (17:00:01 to 17:01:36)",
                "17:01:39 info  [deploy] failed",
            ],
        ),
        (  # same text at another level or from another source is a different line
            [_line("x"), _line("x", level="warn"), _line("x", source="app")],
            [
                "17:00:00 info  [deploy] x",
                "17:00:00 warn  [deploy] x",
                "17:00:00 info  [app] x",
            ],
        ),
        (  # a run at the very end is summed up too
            [_line("b", s) for s in range(5)],
            ["17:00:00 info  [deploy] b", "... x 5 (17:00:00 to 17:00:04)"],
        ),
    ],
)
def test_collapse(lines: list[dict[str, Any]], expected: list[str]) -> None:
    assert collapse(lines) == expected


def test_collapser_streams_without_holding_a_first_line_back() -> None:
    collapser = Collapser()
    assert collapser.feed(_line("a", 0)) == ["17:00:00 info  [deploy] a"]
    assert collapser.feed(_line("a", 1)) == []
    assert collapser.feed(_line("a", 2)) == []
    assert collapser.feed(_line("b", 3)) == [
        "... x 3 (17:00:00 to 17:00:02)",
        "17:00:03 info  [deploy] b",
    ]
    assert collapser.flush() == []


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        (
            {"status": "failed", "error_message": "replica not ready after 30s (HTTP 503)"},
            "deployment d1 failed: replica not ready after 30s (HTTP 503)",
        ),
        ({"status": "rolled_back"}, "deployment d1 rolled_back"),
        (
            {"status": "success", "instances_deployed": 2},
            "deployment d1 succeeded (2 replicas)",
        ),
    ],
)
def test_outcome_line(end: dict[str, Any], expected: str) -> None:
    assert outcome_line("d1", end) == expected
