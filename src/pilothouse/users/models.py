"""Users and their API tokens (stored as SHA-256 hashes, shown once)."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.db import Base, Timestamps, UUIDPk
from pilothouse.core.types import str_enum

ROLES = ("viewer", "deployer", "operator", "admin")


class User(UUIDPk, Timestamps, Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    role: Mapped[str] = mapped_column(str_enum(*ROLES, name="role"))
    email: Mapped[str | None] = mapped_column(sa.String(320), default=None)
    is_active: Mapped[bool] = mapped_column(default=True)


class ApiToken(UUIDPk, Base):
    __tablename__ = "api_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    #: None: the token acts as its user. "ingest": write-only metrics ingestion into
    #: `environment_id` and nothing else (issue 14).
    scope: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("environments.id", ondelete="CASCADE"), default=None
    )
