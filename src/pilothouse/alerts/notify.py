"""Delivering one message to one channel. Network I/O only; what to send is decided elsewhere.

- webhook: POST JSON; header X-Pilothouse-Signature: sha256=<HMAC-SHA256 of the body with the
  channel's secret>, so the receiver can verify the sender;
- slack: POST {"text": ...} (Slack-compatible incoming webhooks);
- email: SMTP (STARTTLS and login when configured), sent in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
from email.message import EmailMessage
from typing import Any

import httpx


class DeliveryFailed(Exception):
    pass


def sign(secret: str, body: bytes) -> str:
    """The signature header value for a webhook body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def render_text(message: dict[str, Any]) -> str:
    """One readable line for chat and email subjects."""
    return str(message.get("text") or message.get("title") or json.dumps(message))


async def deliver(
    kind: str, config: dict[str, Any], message: dict[str, Any], *, timeout: float = 10
) -> None:
    """Send `message`; raise DeliveryFailed with a reason that never contains a secret."""
    try:
        if kind == "webhook":
            body = json.dumps(message, sort_keys=True, default=str).encode()
            headers = {"Content-Type": "application/json", "User-Agent": "pilothouse"}
            if config.get("secret"):
                headers["X-Pilothouse-Signature"] = sign(str(config["secret"]), body)
            await _post(str(config["url"]), body, headers, timeout)
        elif kind == "slack":
            body = json.dumps({"text": render_text(message)}).encode()
            await _post(str(config["url"]), body, {"Content-Type": "application/json"}, timeout)
        elif kind == "email":
            await asyncio.to_thread(_send_mail, config, message, timeout)
        else:
            raise DeliveryFailed(f"unknown channel kind {kind!r}")
    except DeliveryFailed:
        raise
    except (httpx.HTTPError, OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"{kind} delivery failed: {type(exc).__name__}") from None


async def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.post(url, content=body, headers=headers)
    if response.status_code >= 300:
        raise DeliveryFailed(f"receiver answered HTTP {response.status_code}")


def _send_mail(config: dict[str, Any], message: dict[str, Any], timeout: float) -> None:
    mail = EmailMessage()
    mail["Subject"] = f"[pilothouse] {render_text(message)}"[:200]
    mail["From"] = str(config.get("from", "pilothouse@localhost"))
    recipients = config.get("to") or []
    if isinstance(recipients, str):
        recipients = [recipients]
    mail["To"] = ", ".join(recipients)
    mail.set_content(json.dumps(message, indent=2, sort_keys=True, default=str))
    with smtplib.SMTP(
        str(config.get("host", "127.0.0.1")), int(config.get("port", 25)), timeout=timeout
    ) as smtp:
        if config.get("starttls"):
            smtp.starttls()
        if config.get("username"):
            smtp.login(str(config["username"]), str(config.get("password", "")))
        smtp.send_message(mail)
