"""Authenticated streaming encryption (AES-256-GCM in chunks) and the master keyring.

Stream format, version 1 (documented in docs/encryption.md):

    header  = b"PHEC" | version (1 byte) | key id (8 bytes) | chunk size (4 bytes, big endian)
              | nonce prefix (8 random bytes)
    chunk i = length (4 bytes, big endian) | AES-GCM(key, nonce = prefix | i (4 bytes),
              plaintext, aad = header | i (4 bytes) | final flag (1 byte))

Every chunk's tag covers the header, its index and whether it is the last one, so a flipped
bit, a chunk moved or swapped, a truncated stream (no final chunk) or a changed header are all
detected, and a wrong key fails on the first chunk. Memory stays bounded by the chunk size.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"PHEC"
VERSION = 1
HEADER = struct.Struct(">4sB8sI8s")
LENGTH = struct.Struct(">I")
DEFAULT_CHUNK = 4 * 1024 * 1024
TAG = 16


class CryptoError(Exception):
    """A stream that cannot be trusted; the message says what is wrong, never a key."""


def key_id(key: bytes) -> bytes:
    """8 bytes naming a key (a hash of it; the key cannot be recovered from it)."""
    return hashlib.sha256(b"pilothouse key id" + key).digest()[:8]


@dataclass(frozen=True)
class Keyring:
    current: bytes  # key id of the key used for new data
    keys: dict[bytes, bytes]

    def key(self, kid: bytes) -> bytes:
        try:
            return self.keys[kid]
        except KeyError:
            raise CryptoError(
                f"encrypted with key {kid.hex()}, which is not in this keyring"
            ) from None


def parse_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise CryptoError("a master key must be base64") from None
    if len(key) != 32:
        raise CryptoError("a master key must be 32 bytes (base64 of 32 random bytes)")
    return key


def load_keyring(master_key: str | None, key_file: Path) -> Keyring:
    """PILOTHOUSE_MASTER_KEY, or the key file: one base64 key per line, the last one current."""
    if master_key:
        key = parse_key(master_key)
        return Keyring(key_id(key), {key_id(key): key})
    try:
        lines = [line for line in key_file.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise CryptoError(f"no master key: {key_file} is missing (run `pilothouse init`)") from None
    if not lines:
        raise CryptoError(f"{key_file} holds no key")
    keys = [parse_key(line) for line in lines]
    return Keyring(key_id(keys[-1]), {key_id(k): k for k in keys})


def encrypt_stream(
    chunks: Iterable[bytes], keyring: Keyring, *, chunk_size: int = DEFAULT_CHUNK
) -> Iterator[bytes]:
    """Encrypt a byte stream; yields the header, then one record per chunk of `chunk_size`."""
    header = HEADER.pack(MAGIC, VERSION, keyring.current, chunk_size, os.urandom(8))
    aead = AESGCM(keyring.key(keyring.current))
    prefix = header[-8:]
    yield header
    index = 0
    buffer = bytearray()

    def seal(data: bytes, final: bool) -> bytes:
        nonce = prefix + struct.pack(">I", index)
        aad = header + struct.pack(">IB", index, 1 if final else 0)
        sealed = aead.encrypt(nonce, data, aad)
        return LENGTH.pack(len(sealed)) + sealed

    for piece in chunks:
        buffer.extend(piece)
        while len(buffer) > chunk_size:
            yield seal(bytes(buffer[:chunk_size]), False)
            del buffer[:chunk_size]
            index += 1
    yield seal(bytes(buffer), True)


class _Reader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.source = iter(chunks)
        self.buffer = bytearray()
        self.done = False

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n and not self.done:
            try:
                self.buffer.extend(next(self.source))
            except StopIteration:
                self.done = True
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def at_end(self) -> bool:
        return not self.read_ahead()

    def read_ahead(self) -> bool:
        while not self.buffer and not self.done:
            try:
                self.buffer.extend(next(self.source))
            except StopIteration:
                self.done = True
        return bool(self.buffer)


def decrypt_stream(chunks: Iterable[bytes], keyring: Keyring) -> Iterator[bytes]:
    """Decrypt and authenticate a stream made by encrypt_stream, chunk by chunk."""
    reader = _Reader(chunks)
    header = reader.read(HEADER.size)
    if len(header) < HEADER.size:
        raise CryptoError("not a pilothouse encrypted stream: too short for a header")
    magic, version, kid, chunk_size, prefix = HEADER.unpack(header)
    if magic != MAGIC:
        raise CryptoError("not a pilothouse encrypted stream (bad magic)")
    if version != VERSION:
        raise CryptoError(f"unsupported format version {version}")
    aead = AESGCM(keyring.key(kid))
    index = 0
    while True:
        raw_length = reader.read(LENGTH.size)
        if len(raw_length) < LENGTH.size:
            raise CryptoError(f"truncated: the stream ends before its final chunk (chunk {index})")
        (length,) = LENGTH.unpack(raw_length)
        if length > chunk_size + TAG or length < TAG:
            raise CryptoError(f"chunk {index} has an impossible length {length}: damaged")
        sealed = reader.read(length)
        if len(sealed) < length:
            raise CryptoError(f"truncated inside chunk {index}")
        nonce = prefix + struct.pack(">I", index)
        final = reader.at_end()
        aad = header + struct.pack(">IB", index, 1 if final else 0)
        try:
            plain = aead.decrypt(nonce, sealed, aad)
        except InvalidTag:
            if final:
                raise CryptoError(
                    f"chunk {index} failed authentication: damaged, reordered, truncated, "
                    "or the wrong key"
                ) from None
            raise CryptoError(
                f"chunk {index} failed authentication: damaged, reordered, or the wrong key"
            ) from None
        yield plain
        if final:
            return
        index += 1


def seal_value(value: str, keyring: Keyring) -> str:
    """Encrypt a short secret (a DSN, a password) for storage: base64 of one encrypted stream."""
    return base64.b64encode(b"".join(encrypt_stream([value.encode()], keyring))).decode()


def open_value(sealed: str, keyring: Keyring) -> str:
    """The secret behind seal_value's output; CryptoError if it was altered or the key is gone."""
    try:
        raw = base64.b64decode(sealed, validate=True)
    except ValueError:
        raise CryptoError("a sealed value must be base64") from None
    return b"".join(decrypt_stream([raw], keyring)).decode()


def sealed_key_id(sealed: str) -> bytes:
    """The id of the key a seal_value output was encrypted with (read from its header)."""
    raw = base64.b64decode(sealed)[: HEADER.size]
    if len(raw) < HEADER.size or raw[:4] != MAGIC:
        raise CryptoError("not a sealed value")
    return bytes(HEADER.unpack(raw)[2])


def rotate_key_file(path: Path) -> tuple[str, int]:
    """Append a new random key (it becomes current); returns its id and the number of keys."""
    if not path.exists():
        raise CryptoError(f"no key file at {path} (run `pilothouse init` first)")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise CryptoError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    keys = [parse_key(line) for line in path.read_text().splitlines() if line.strip()]
    key = os.urandom(32)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        for old in [*keys, key]:
            handle.write(base64.b64encode(old).decode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return key_id(key).hex(), len(keys) + 1
