"""Environment variables (seed 003 Environment Variables, seed 002 encrypted secrets), their
version history, and the requirements declared on an environment (seed 001 validation rules)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base, SoftDelete, Timestamps, UUIDPk, live_unique
from pilothouse.core.types import str_enum

VERSION_ACTIONS = ("set", "unset", "revert")


class EnvVar(UUIDPk, Timestamps, SoftDelete, Base):
    """The current value of one variable of an environment, or of one service in it."""

    __tablename__ = "env_vars"
    __table_args__ = (live_unique("uq_env_vars_live_key", "environment_id", "scope", "key"),)

    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    service_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("services.id"), default=None)
    scope: Mapped[str] = mapped_column(sa.String(36), default="")  # "" or the service id
    key: Mapped[str] = mapped_column(sa.String(255))
    value_encrypted: Mapped[str] = mapped_column(sa.Text)
    key_id: Mapped[str] = mapped_column(sa.String(16))
    is_secret: Mapped[bool] = mapped_column(default=False)
    platform_synced: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(default=1)
    updated_by: Mapped[str] = mapped_column(sa.String(200), default="")


class EnvVarVersion(UUIDPk, Base):
    """Every change of a variable is a new version; values stay encrypted here too."""

    __tablename__ = "env_var_versions"
    __table_args__ = (
        sa.UniqueConstraint("var_id", "version", name="uq_env_var_versions_var_version"),
    )

    var_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("env_vars.id"), index=True)
    version: Mapped[int] = mapped_column()
    action: Mapped[str] = mapped_column(str_enum(*VERSION_ACTIONS, name="env_var_action"))
    value_encrypted: Mapped[str | None] = mapped_column(sa.Text, default=None)
    key_id: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    is_secret: Mapped[bool] = mapped_column(default=False)
    actor: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VarRequirement(UUIDPk, Base):
    """A variable an environment's deployments need, and the format its value must have."""

    __tablename__ = "var_requirements"
    __table_args__ = (
        sa.UniqueConstraint("environment_id", "key", name="uq_var_requirements_env_key"),
    )

    environment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("environments.id"))
    key: Mapped[str] = mapped_column(sa.String(255))
    required: Mapped[bool] = mapped_column(default=True)
    rule: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
