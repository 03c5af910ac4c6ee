"""The encrypted stream format: round trips, and every kind of damage detected."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.core.crypto import (
    HEADER,
    LENGTH,
    CryptoError,
    Keyring,
    decrypt_stream,
    encrypt_stream,
    key_id,
    load_keyring,
)

KEY = os.urandom(32)
RING = Keyring(key_id(KEY), {key_id(KEY): KEY})


def seal(data: bytes, chunk: int = 64) -> bytes:
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)] or [b""]
    return b"".join(encrypt_stream(pieces, RING, chunk_size=chunk))


def open_(blob: bytes, ring: Keyring = RING) -> bytes:
    return b"".join(decrypt_stream([blob[i : i + 50] for i in range(0, len(blob), 50)], ring))


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=300))
@settings(max_examples=150, deadline=None)
def test_round_trip(data: bytes, chunk: int) -> None:
    assert open_(seal(data, chunk)) == data


def records(blob: bytes) -> list[tuple[int, int]]:
    """(start, end) of each chunk record after the header."""
    out, pos = [], HEADER.size
    while pos < len(blob):
        (length,) = LENGTH.unpack(blob[pos : pos + 4])
        out.append((pos, pos + 4 + length))
        pos += 4 + length
    return out


DATA = os.urandom(1000)


@pytest.mark.parametrize("where", ["header", "length", "body", "tag", "last"])
def test_a_flipped_byte_is_detected(where: str) -> None:
    blob = bytearray(seal(DATA))
    spans = records(bytes(blob))
    position = {
        "header": 10,
        "length": spans[1][0] + 3,
        "body": spans[2][0] + 10,
        "tag": spans[3][1] - 1,
        "last": len(blob) - 1,
    }[where]
    blob[position] ^= 0x01
    with pytest.raises(CryptoError):
        open_(bytes(blob))


def test_truncation_is_detected_inside_and_at_chunk_boundaries() -> None:
    blob = seal(DATA)
    spans = records(blob)
    with pytest.raises(CryptoError, match="truncated"):
        open_(blob[: spans[-1][0] + 10])
    with pytest.raises(CryptoError, match=r"truncated|authentication"):
        open_(blob[: spans[-1][0]])  # the final chunk dropped whole
    with pytest.raises(CryptoError, match="header"):
        open_(blob[:5])


def test_swapped_chunks_are_detected() -> None:
    blob = seal(DATA)
    (a0, a1), (b0, b1) = records(blob)[1:3]
    swapped = blob[:a0] + blob[b0:b1] + blob[a0:a1] + blob[b1:]
    with pytest.raises(CryptoError, match="chunk 1 failed authentication"):
        open_(swapped)


def test_wrong_key_and_unknown_key_are_named() -> None:
    blob = seal(DATA)
    other = os.urandom(32)
    impostor = Keyring(key_id(KEY), {key_id(KEY): other})  # same id, wrong bytes
    with pytest.raises(CryptoError, match="wrong key"):
        open_(blob, impostor)
    stranger = Keyring(key_id(other), {key_id(other): other})
    with pytest.raises(CryptoError, match="not in this keyring"):
        open_(blob, stranger)


def test_keyring_file_rotation_keeps_old_data_readable(tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    path = tmp_path / "master.key"
    path.write_text(base64.b64encode(old).decode() + "\n")
    first = load_keyring(None, path)
    blob = b"".join(encrypt_stream([b"before rotation"], first))
    path.write_text(path.read_text() + base64.b64encode(new).decode() + "\n")
    rotated = load_keyring(None, path)
    assert rotated.current == key_id(new)
    assert b"".join(decrypt_stream([blob], rotated)) == b"before rotation"
    assert KEY.hex() not in str(rotated.current)
    with pytest.raises(CryptoError, match="32 bytes"):
        load_keyring(base64.b64encode(b"short").decode(), path)
