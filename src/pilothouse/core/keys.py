"""The master keyring of this process, for work that opens sealed values outside a request
(alert delivery, dependency probes). `serve` and the worker declare where the key lives at
start; without that, the PILOTHOUSE_* settings are read (a CLI command on the host). The key
file is read on every call, so `pilothouse keys rotate` needs no restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pilothouse.core.crypto import Keyring, load_keyring

_loader: Callable[[], Keyring] | None = None


def use(master_key: str | None, key_file: Path) -> None:
    """Declare where this process's master key comes from."""
    global _loader
    _loader = lambda: load_keyring(master_key, key_file)  # noqa: E731


def process_keyring() -> Keyring:
    """The keyring (CryptoError when there is none)."""
    if _loader is not None:
        return _loader()
    from pilothouse.config import Settings

    settings = Settings()
    return load_keyring(settings.master_key, settings.master_key_path)
