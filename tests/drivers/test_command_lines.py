"""Reading a command's output: whole lines, and lines over 64 KiB cut with a marker."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.drivers.command import MAX_LINE, read_lines

MARK = " [line cut at 64 KiB]"


def lines_of(*chunks: bytes) -> list[str]:
    async def run() -> list[str]:
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        return [line async for line in read_lines(reader)]

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ((b"a\nb\n",), ["a", "b"]),
        ((b"a", b"b\nc"), ["ab", "c"]),
        ((b"x\r\n",), ["x"]),
        ((b"y" * 70000 + b"\nnext\n",), ["y" * MAX_LINE + MARK, "next"]),
        ((b"y" * 40000, b"y" * 40000, b"\nnext"), ["y" * MAX_LINE + MARK, "next"]),
        ((b"z" * 200000, b"z" * 5 + b"\nafter\n"), ["z" * MAX_LINE + MARK, "after"]),
        ((b"\xff\xfe ok\n",), ["\ufffd\ufffd ok"]),
    ],
)
def test_read_lines(chunks: tuple[bytes, ...], expected: list[str]) -> None:
    assert lines_of(*chunks) == expected
