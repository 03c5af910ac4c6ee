"""The scrubbing relay on a full disk: the replica keeps running, lines are dropped and counted.

Before, the relay died on the first ENOSPC, the replica's next write hit a closed pipe and the
replica died with it: a full log disk became a crash loop of every replica on the host.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

WRITER = """
import sys
for i in range(2000):                 # ~220 KB: more than the 64 KiB disk holds
    print(f"line {i} " + "x" * 100, flush=True)
sys.stdin.readline()                  # wait until the test has made room
for i in range(2000, 2100):           # ~11 KB: fits
    print(f"line {i} " + "x" * 100, flush=True)
print("last line", flush=True)
"""


def test_a_full_disk_drops_lines_but_never_kills_the_replica(small_disk: Path) -> None:
    log_path = small_disk / "replica.log"
    relay = subprocess.Popen(
        [sys.executable, "-m", "pilothouse.drivers.scrubber", str(log_path)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert relay.stdin is not None
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER],
        stdout=relay.stdin,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    relay.stdin.close()
    relay.stdin = None  # the writer holds the pipe now
    time.sleep(3)  # the writer has filled the 64 KiB disk and waits at line 2000
    os.truncate(log_path, 0)  # room again (the relay appends, so it writes from the start)
    assert writer.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # (today the writer is dead by now)
        writer.stdin.write(b"go\n")
        writer.stdin.close()
    writer.stdin = None
    _, writer_err = writer.communicate(timeout=60)
    _, relay_err = relay.communicate(timeout=60)
    assert writer.returncode == 0, writer_err.decode()[-500:]
    assert relay.returncode == 0, relay_err.decode()[-500:]
    text = log_path.read_text()
    assert re.search(r"pilothouse: \d+ lines? dropped \(No space left on device\)", text), text[
        :300
    ]
    assert text.endswith("last line\n")
