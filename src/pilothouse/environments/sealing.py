"""Credentials inside an environment's `config` (a `database_url` or `redis_url` with a
password, a URL with a token in `config.env`, any value under a key that looks secret such as
`config.env.API_KEY`, by variables.rules.looks_secret): sealed when written, masked when shown.

`config` keeps the masked form (what the API, the CLI and audit entries show); the clear
values are sealed together in `config_sealed` as JSON `[[path, value], ...]`, where a path is
the list of keys leading to the value. Writing back a masked value unchanged (a read, edit,
write round trip) keeps the sealed one."""

from __future__ import annotations

import json
from typing import Any

from pilothouse.core.crypto import Keyring, open_value, seal_value
from pilothouse.core.urls import MASK, has_credentials, mask_url
from pilothouse.variables.rules import looks_secret

Path = tuple[str, ...]


def _walk(config: Any, path: Path = ()) -> list[tuple[Path, str]]:
    if isinstance(config, dict):
        return [pair for k, v in config.items() for pair in _walk(v, (*path, str(k)))]
    if isinstance(config, str) and config and path and looks_secret(path[-1], config):
        return [(path, config)]
    return []


def mask(value: str) -> str:
    """How a sealed config value is shown: a URL keeps its shape, anything else is ***."""
    return mask_url(value) if has_credentials(value) else MASK


def credentials(config: dict[str, Any]) -> bool:
    """Whether any value of `config` carries a credential."""
    return bool(_walk(config))


def _set(config: dict[str, Any], path: Path, value: str) -> None:
    node: Any = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _copy(config: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(config))
    return copied


def opened_values(sealed: str | None, keyring: Keyring) -> dict[Path, str]:
    """The sealed credentials by path."""
    if not sealed:
        return {}
    return {tuple(path): value for path, value in json.loads(open_value(sealed, keyring))}


def seal_config(
    config: dict[str, Any],
    keyring: Keyring,
    *,
    previous: dict[Path, str] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """(config to store and show, sealed credentials or None). `previous` are the credentials
    sealed before: a masked value written back unchanged keeps its sealed value."""
    shown = _copy(config)
    clear: dict[Path, str] = {}
    for path, value in _walk(config):
        old = (previous or {}).get(path)
        clear[path] = old if old is not None and mask(old) == value else value
        _set(shown, path, mask(value))
    return shown, reseal(clear, keyring)


def reseal(clear: dict[Path, str], keyring: Keyring) -> str | None:
    """The sealed form of credentials by path (None when there are none)."""
    if not clear:
        return None
    return seal_value(json.dumps([[list(p), v] for p, v in clear.items()]), keyring)


def open_config(config: dict[str, Any], sealed: str | None, keyring: Keyring) -> dict[str, Any]:
    """The config with its credentials in clear (for probes and for deployments only)."""
    if not sealed:
        return dict(config or {})
    full = _copy(config or {})
    for path, value in opened_values(sealed, keyring).items():
        try:
            _set(full, path, value)
        except (KeyError, TypeError):
            continue  # the path went away with a later change
    return full
