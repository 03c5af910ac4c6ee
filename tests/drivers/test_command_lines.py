"""Reading a command's output: whole lines, and lines over 64 KiB cut with a marker."""

from __future__ import annotations

import asyncio
from pathlib import Path

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


def test_replica_log_tail_takes_a_huge_line_without_stalling(tmp_path: Path) -> None:
    """The process driver's tail of a replica log: lines in order, a 300 KB line without a
    newline is forwarded cut (it does not wait for the newline), the lines after it follow."""
    from pilothouse.drivers.process import _tail

    log = tmp_path / "replica.log"
    log.write_bytes(b"first\n" + b"h" * 300_000)
    got: list[str] = []

    class Events:
        async def log_many(self, messages: list[str], *, source: str) -> None:
            got.extend(messages)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(_tail(log, Events(), "replica:x", stop))  # type: ignore[arg-type]
        while not any(line.startswith("hhh") for line in got):
            await asyncio.sleep(0.01)
        with open(log, "ab") as handle:
            handle.write(b"\nlast\n")
        await asyncio.sleep(0.5)
        stop.set()
        await task

    asyncio.run(asyncio.wait_for(run(), 20))
    assert got[0] == "first" and got[-1] == "last"
    assert all(len(line) <= MAX_LINE for line in got)
