"""Channel settings: one typed model per kind, validated when written, and the split of a
channel's settings into what may be shown and what is sealed (pure functions).

| kind    | shown                                  | sealed                        |
|---------|----------------------------------------|-------------------------------|
| webhook | url (scheme and host only)             | url, secret (HMAC-SHA256 key) |
| slack   | url (scheme and host only)             | url (its path is the token)   |
| email   | host, port, from, to, starttls, user   | password                      |
"""

from __future__ import annotations

from email.headerregistry import Address
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from pilothouse.core.urls import MASK, mask_url
from pilothouse.errors import ValidationFailed

Kind = Literal["webhook", "slack", "email"]


def _absolute_http_url(value: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("must be an absolute http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def _address(value: str) -> str:
    try:
        address = Address(addr_spec=value.strip())
    except Exception:  # email's parser raises several kinds of error
        raise ValueError(f"{value!r} is not an e-mail address (user@domain)") from None
    if not address.username or not address.domain:
        raise ValueError(f"{value!r} is not an e-mail address (user@domain)")
    return address.addr_spec


HttpUrl = Annotated[str, AfterValidator(_absolute_http_url)]
EmailAddress = Annotated[str, AfterValidator(_address)]


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(max_length=2000, description="Where to POST (sealed; shown masked).")
    secret: str | None = Field(
        default=None, min_length=1, max_length=500, description="HMAC-SHA256 key (sealed)."
    )


class SlackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(max_length=2000, description="Incoming webhook URL (sealed).")


class EmailSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str = Field(min_length=1, max_length=253, description="SMTP server.")
    port: int = Field(default=25, ge=1, le=65535, strict=True, description="SMTP port.")
    from_: EmailAddress = Field(
        default="pilothouse@localhost", alias="from", description="Sender address."
    )
    to: list[EmailAddress] = Field(min_length=1, max_length=100, description="Recipients.")
    starttls: bool = Field(default=False, strict=True, description="Upgrade with STARTTLS.")
    username: str | None = Field(default=None, max_length=200, description="SMTP login.")
    password: str | None = Field(default=None, max_length=500, description="Sealed.")


MODELS: dict[str, type[BaseModel]] = {
    "webhook": WebhookSettings,
    "slack": SlackSettings,
    "email": EmailSettings,
}
SEALED = {"webhook": ("url", "secret"), "slack": ("url",), "email": ("password",)}


def validate(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The settings in normal form, or ValidationFailed naming `config.<field>` and the rule."""
    model = MODELS.get(kind)
    if model is None:
        raise ValidationFailed("kind", f"must be one of {', '.join(MODELS)}")
    try:
        parsed = model.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        rule = str(first["msg"]).removeprefix("Value error, ")
        raise ValidationFailed(f"config.{where}", rule) from None
    return parsed.model_dump(by_alias=True, exclude_none=True)


def split(kind: str, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(shown, sealed): what may be stored in clear and shown, and what must be sealed."""
    sealed = {k: v for k, v in settings.items() if k in SEALED.get(kind, ()) and v is not None}
    shown = {k: v for k, v in settings.items() if k not in sealed}
    for key, value in sealed.items():
        shown[key] = mask_url(str(value), hide_path=True) if key == "url" else MASK
    return shown, sealed
