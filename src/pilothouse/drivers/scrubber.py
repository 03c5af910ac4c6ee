"""The scrubbing relay between a replica's output and its log file.

    python -m pilothouse.drivers.scrubber LOG_PATH      (started by the process driver)

Reads the secret values (base64, one per line) from the file descriptor named by
PILOTHOUSE_SCRUB_FD until EOF, then copies stdin to LOG_PATH line by line with every secret value
replaced by ********. It runs detached beside the replica, so it outlives a pilothouse restart,
and exits when the replica closes its output. Plaintext secrets never reach the disk.
"""

from __future__ import annotations

import base64
import os
import sys

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
    with open(log_path, "ab", buffering=0) as log:
        for line in sys.stdin.buffer:
            for pat in pats:
                if pat in line:
                    line = line.replace(pat, mask)
            log.write(line)


if __name__ == "__main__":
    main()
