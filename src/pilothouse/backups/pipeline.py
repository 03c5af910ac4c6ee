"""The streamed pipeline: dump -> zstd (multi-threaded) -> AES-256-GCM chunks -> SHA-256 -> storage,
and back. Memory stays bounded (a few MiB) whatever the database size."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import zstandard

from pilothouse.backups.storage import Writer
from pilothouse.core.crypto import CryptoError, Keyring, decrypt_stream, encrypt_stream

READ_SIZE = 1024 * 1024
JOB_SIZE = 2 * 1024 * 1024
ALGORITHM = "AES-256-GCM"

Progress = Callable[[int], None]


class BackupDamaged(Exception):
    """The object cannot be trusted: the message names what is wrong."""


@dataclass(frozen=True)
class Written:
    raw_bytes: int  # what the dump tool produced
    stored_bytes: int  # what storage holds (compressed and encrypted)
    checksum: str  # SHA-256 of the stored object, hex
    key_id: str


def _compressed(
    source: IO[bytes], level: int, threads: int, counter: list[int], progress: Progress | None
) -> Iterator[bytes]:
    # A 2 MiB job size keeps zstd's multi-threaded buffers small (the default, 4x the window,
    # held ~60 MB more on incompressible data) at a negligible cost in ratio.
    params = zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads, job_size=JOB_SIZE, write_checksum=True
    )
    compressor = zstandard.ZstdCompressor(compression_params=params)
    stream = compressor.compressobj()
    while piece := source.read(READ_SIZE):
        counter[0] += len(piece)
        if progress is not None:
            progress(len(piece))
        out = stream.compress(piece)
        if out:
            yield out
    yield stream.flush()


def write_backup(
    source: IO[bytes],
    keyring: Keyring,
    writer: Writer,
    *,
    level: int = 3,
    threads: int = 2,
    progress: Progress | None = None,
) -> Written:
    """Stream `source` to `writer`; the caller commits the writer once the dump tool succeeded."""
    digest = hashlib.sha256()
    counter = [0]
    stored = 0
    for block in encrypt_stream(_compressed(source, level, threads, counter, progress), keyring):
        digest.update(block)
        writer.write(block)
        stored += len(block)
    return Written(counter[0], stored, digest.hexdigest(), keyring.current.hex())


class _IterReader(io.RawIOBase):
    """A file-like view of an iterator of byte strings (what zstandard's reader wants)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def read_backup(
    chunks: Iterable[bytes],
    keyring: Keyring,
    *,
    checksum: str | None,
    expected_size: int | None = None,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Authenticate, decrypt and decompress a stored object, yielding the dump in bounded pieces.

    Raises BackupDamaged (a failed tag, truncation, a wrong key, a bad zstd frame or a checksum
    that differs from the recorded one). The checksum is only known at the end: consumers must
    not commit what they wrote until the iterator is exhausted without an error."""
    digest = hashlib.sha256()

    def hashed() -> Iterator[bytes]:
        for chunk in chunks:
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
            yield chunk

    total = 0
    try:
        plain = _IterReader(iter(decrypt_stream(hashed(), keyring)))
        # stream_reader bounds each output to READ_SIZE even for very compressible dumps, and
        # checks the zstd frame checksum when the frame ends.
        reader = zstandard.ZstdDecompressor().stream_reader(plain, read_size=READ_SIZE)  # type: ignore[arg-type]
        while out := reader.read(READ_SIZE):
            total += len(out)
            yield out
        if plain.read(1):  # also drives decryption to the final chunk, so the digest is whole
            raise BackupDamaged("data follows the end of the compressed stream")
        if expected_size is not None and total != expected_size:
            raise BackupDamaged(
                f"the dump is {total} bytes but {expected_size} were recorded: incomplete"
            )
    except CryptoError as exc:
        raise BackupDamaged(str(exc)) from None
    except zstandard.ZstdError as exc:
        raise BackupDamaged(f"the compressed stream is damaged: {exc}") from None
    if checksum is not None and digest.hexdigest() != checksum:
        raise BackupDamaged(
            "checksum mismatch: the object is not the one recorded at backup time "
            f"(recorded {checksum[:16]}..., found {digest.hexdigest()[:16]}...)"
        )
