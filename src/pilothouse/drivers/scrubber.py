"""The scrubbing relay between a replica's output and its log file.

    python -m pilothouse.drivers.scrubber LOG_PATH      (started by the process driver)

Reads the secret values (base64, one per line) from the file descriptor named by
PILOTHOUSE_SCRUB_FD until EOF, then copies stdin to LOG_PATH line by line with every secret value
replaced by ********. It runs detached beside the replica, so it outlives a pilothouse restart,
and exits when the replica closes its output. Plaintext secrets never reach the disk.

When the disk refuses a write (full, quota, I/O error) the relay keeps reading the replica's
output and drops the lines, so the replica never dies of a closed pipe; once a write succeeds
again, a line `[pilothouse: N lines dropped (...)]` says what was lost.
"""

from __future__ import annotations

import base64
import errno
import os
import sys
from typing import BinaryIO

from pilothouse.core import redact


def main() -> None:
    log_path = sys.argv[1]
    fd = int(os.environ.get("PILOTHOUSE_SCRUB_FD", "-1"))
    secrets: list[bytes] = []
    if fd >= 0:
        with os.fdopen(fd, "rb") as source:
            secrets = [base64.b64decode(line) for line in source.read().split() if line]
    pats = [p.encode() for p in redact.patterns(s.decode() for s in secrets)]
    mask = redact.MASK.encode()
    dropped, why = 0, ""
    with open(log_path, "ab", buffering=0) as log:
        for line in sys.stdin.buffer:
            for pat in pats:
                if pat in line:
                    line = line.replace(pat, mask)
            if dropped:
                # Room again? Say first what was lost, then carry on.
                note = f"[pilothouse: {dropped} line{'s' * (dropped != 1)} dropped ({why})]\n"
                if _write(log, note.encode()) is not None:
                    dropped += 1
                    continue
                dropped = 0
            refused = _write(log, line)
            if refused is not None:
                # A full disk must not kill the replica: keep draining its output (a relay
                # that died would close the pipe, and the replica's next write would kill it).
                dropped, why = dropped + 1, refused


def _write(log: BinaryIO, data: bytes) -> str | None:
    """Write all of `data`; None, or why the disk refused it (full, quota, I/O error)."""
    try:
        written = log.write(data)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if written == len(data) else os.strerror(errno.ENOSPC)


if __name__ == "__main__":
    main()
