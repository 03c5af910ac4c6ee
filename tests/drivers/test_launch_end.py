"""The end every launch shares (drivers/process.ready_or_stopped): readiness is waited for while
the replica's output goes into the deployment's logs; one that never becomes ready is stopped
and its exit code kept; the output is forwarded to its end whatever happens."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from pilothouse.drivers.process import free_port, ready_or_stopped
from pilothouse.drivers.readiness import ReadinessSpec


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def log(self, message: str, *, level: str = "info", source: str = "deploy") -> None:
        self.lines.append((source, message))

    async def log_many(self, messages: list[str], *, source: str) -> None:
        self.lines.extend((source, m) for m in messages)

    async def replica_created(
        self,
        version: str,
        *,
        port: int | None,
        log_path: str | None,
        node_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        raise AssertionError("not created here")

    async def replica_changed(self, replica_id: uuid.UUID, to: str, **fields: object) -> None:
        raise AssertionError("not recorded here")


async def test_a_replica_never_ready_is_stopped_and_its_output_forwarded(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    log.write_text("booting\nstill booting\n")
    events = Lines()
    stopped: list[int] = []

    async def stop() -> int:
        stopped.append(1)
        return 3

    replica = uuid.UUID(int=5)
    result = await ready_or_stopped(
        ReadinessSpec(timeout=0.3, interval=0.05),
        "127.0.0.1",
        free_port(),  # nothing listens there
        alive=lambda: True,
        stop=stop,
        output=(log, events, replica),  # type: ignore[arg-type]
    )
    assert not result.ready and result.exit_code == 3 and stopped == [1]
    label = f"replica:{str(replica)[:8]}"
    assert events.lines == [(label, "booting"), (label, "still booting")]


async def test_the_output_is_forwarded_to_its_end_when_the_wait_is_cancelled(
    tmp_path: Path,
) -> None:
    log = tmp_path / "r.log"
    events = Lines()

    async def stop() -> int:
        raise AssertionError("a cancelled wait stops nothing")

    waiting = asyncio.create_task(
        ready_or_stopped(
            ReadinessSpec(timeout=30, interval=0.05),
            "127.0.0.1",
            free_port(),
            alive=lambda: True,
            stop=stop,
            output=(log, events, uuid.UUID(int=6)),  # type: ignore[arg-type]
        )
    )
    await asyncio.sleep(0.3)
    log.write_text("last words\n")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert [m for _, m in events.lines] == ["last words"]


class Gone(Lines):
    async def log_many(self, messages: list[str], *, source: str) -> None:
        raise ConnectionRefusedError("the store is gone")


async def test_a_cancelled_wait_is_cancelled_when_the_output_could_not_be_written(
    tmp_path: Path,
) -> None:
    """The output's failure does not replace the cancellation (the caller's own)."""
    log = tmp_path / "r.log"
    log.write_text("a line\n")

    async def stop() -> int:
        raise AssertionError("a cancelled wait stops nothing")

    waiting = asyncio.create_task(
        ready_or_stopped(
            ReadinessSpec(timeout=30, interval=0.05),
            "127.0.0.1",
            free_port(),
            alive=lambda: True,
            stop=stop,
            output=(log, Gone(), uuid.UUID(int=7)),  # type: ignore[arg-type]
        )
    )
    await asyncio.sleep(0.3)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
