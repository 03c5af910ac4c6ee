"""Dashboard sessions (a browser logged in with an API token) and public status page opt-ins."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.db import Base, UUIDPk


class WebSession(UUIDPk, Base):
    """One browser login. The cookie holds a random secret; only its SHA-256 is stored. The
    session acts as the token it was opened with, so revoking the token ends the session."""

    __tablename__ = "web_sessions"

    token_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()


class PublicStatus(Base):
    """A service whose status page is public (no login): opted in by an operator."""

    __tablename__ = "public_status_pages"

    service_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )
    created_by: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column()
