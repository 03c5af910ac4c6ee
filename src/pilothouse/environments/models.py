"""Environments (seed 002 Environment, seed 003 Environment Configuration) and access grants."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.db import Base, SoftDelete, Timestamps, UUIDPk, live_unique
from pilothouse.core.types import str_enum

ENVIRONMENT_TYPES = ("development", "staging", "production")


class Environment(UUIDPk, Timestamps, SoftDelete, Base):
    __tablename__ = "environments"
    __table_args__ = (
        live_unique("uq_environments_live_name", "name"),
        sa.Index("ix_environments_owner_deleted", "owner_id", "deleted_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(sa.String(100))
    type: Mapped[str] = mapped_column(
        str_enum(*ENVIRONMENT_TYPES, name="environment_type"), default="development"
    )
    domain: Mapped[str | None] = mapped_column(sa.String(253), default=None)
    driver: Mapped[str] = mapped_column(sa.String(32), default="process")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # credentials masked
    # The credentials found in `config` (URL passwords), sealed with the master keyring:
    # JSON {dotted path: clear value}; environments.service.open_config() puts them back.
    config_sealed: Mapped[str | None] = mapped_column(sa.Text, default=None)
    config_key_id: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    features: Mapped[dict[str, Any]] = mapped_column(default=dict)
    limits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)


class EnvironmentGrant(Base):
    """A user may see (and, by role, act on) everything in an environment they were granted."""

    __tablename__ = "environment_grants"

    environment_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    granted_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column()
