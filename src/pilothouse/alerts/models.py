"""Notification channels: where alerts go (webhook, Slack-compatible webhook, email).

A channel is an owned record like every other (its owner, or anyone granted its environment,
sees it; admins see all). Its credentials (the webhook's HMAC key, the SMTP password, the whole
URL of a webhook or Slack channel, which often carries a token) are sealed with the master
keyring in `secrets_encrypted`; `config` keeps only what may be shown, with URLs masked.

Deployment notifications are opt-in per channel: `deploy_events` lists the deployment events
it receives (none by default) and `deploy_environments` the environments (by name; empty: all,
or only its own environment when the channel belongs to one)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, UUIDPk
from pilothouse.core.types import JSONType, str_enum

CHANNEL_KINDS = ("webhook", "slack", "email")
#: Deployment events a channel may opt in to (alerts/deployments.py sends them).
DEPLOY_EVENTS = ("started", "succeeded", "failed", "rolled_back")


class NotificationChannel(UUIDPk, Base):
    __tablename__ = "notification_channels"
    __table_args__ = (sa.UniqueConstraint("name", name="uq_notification_channels_name"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("environments.id"), default=None
    )
    name: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(str_enum(*CHANNEL_KINDS, name="channel_kind"))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # shown: secrets masked
    secrets_encrypted: Mapped[str | None] = mapped_column(sa.Text, default=None)
    key_id: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    last_failure_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    deploy_events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    deploy_environments: Mapped[list[str]] = mapped_column(JSONType, default=list)
