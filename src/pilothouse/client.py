"""The CLI's HTTP client: URL and token from flags, PILOTHOUSE_* variables or the config file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8600"


class CliError(Exception):
    """One readable line for the user; the CLI prints it and exits non-zero."""

    def __init__(
        self, message: str, exit_code: int = 1, code: str | None = None, detail: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code
        self.detail = detail


def config_path() -> Path:
    """Where init saves the CLI's URL and token (PILOTHOUSE_CLI_CONFIG overrides)."""
    override = os.environ.get("PILOTHOUSE_CLI_CONFIG")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pilothouse" / "cli.json"


def load_config() -> dict[str, str]:
    path = config_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read CLI config {path}: {exc}") from None
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


def save_config(url: str, token: str) -> Path:
    """Write url and token with mode 0600."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    os.chmod(path, 0o600)
    return path


@dataclass
class ApiClient:
    url: str
    token: str | None
    timeout: float = 30.0

    @classmethod
    def from_env(cls, url: str | None = None) -> ApiClient:
        saved = load_config()
        return cls(
            url=(url or os.environ.get("PILOTHOUSE_URL") or saved.get("url") or DEFAULT_URL).rstrip(
                "/"
            ),
            token=os.environ.get("PILOTHOUSE_TOKEN") or saved.get("token"),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        content: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Call /api/v1<path>: decoded JSON, or CliError carrying the server's message.
        `content` (bytes or a file opened in binary mode, streamed) is sent as a JSON body."""
        if not self.token:
            raise CliError(
                "no API token: set PILOTHOUSE_TOKEN or run `pilothouse init` on the server host"
            )
        clean = {k: v for k, v in (params or {}).items() if v not in (None, [], "")}
        headers = {"Authorization": f"Bearer {self.token}"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = httpx.request(
                method,
                f"{self.url}/api/v1{path}",
                json=json_body,
                content=content,
                params=clean,
                headers=headers,
                timeout=timeout or self.timeout,
            )
        except httpx.ConnectError:
            raise CliError(
                f"cannot reach pilothouse at {self.url} (is `pilothouse serve` running?)"
            ) from None
        except httpx.TimeoutException:
            raise CliError(
                f"pilothouse at {self.url} did not answer within {timeout or self.timeout:.0f}s"
            ) from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.url} failed: {type(exc).__name__}") from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return body
        raise _error(response.status_code, response.reason_phrase, body)

    def events(self, path: str, params: dict[str, Any] | None = None) -> Iterator[tuple[str, Any]]:
        """Server-Sent Events from /api/v1<path>, as (event, decoded data) pairs."""
        if not self.token:
            raise CliError("no API token: set PILOTHOUSE_TOKEN or run `pilothouse init`")
        try:
            with httpx.stream(
                "GET",
                f"{self.url}/api/v1{path}",
                params=params,
                headers={"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"},
                timeout=httpx.Timeout(self.timeout, read=None),
            ) as response:
                if not response.is_success:
                    response.read()
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    raise _error(response.status_code, response.reason_phrase, body)
                event, data = "", []
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and event:
                        yield event, json.loads("\n".join(data)) if data else None
                        event, data = "", []
        except httpx.ConnectError:
            raise CliError(f"cannot reach pilothouse at {self.url}") from None
        except httpx.HTTPError as exc:
            raise CliError(f"event stream from {self.url} broke: {type(exc).__name__}") from None


def _error(status: int, reason: str, body: Any) -> CliError:
    message = body.get("message") if isinstance(body, dict) else None
    code = body.get("error") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else None
    return CliError(f"{message or reason} (HTTP {status})", code=code, detail=detail)
