"""The app-reported figures of each replica (table `replica_figures`), kept by the scraper.

One row per replica: what its last `/metrics` scrape said (requests and errors counters, active
connections, start time, resident memory), the counter points of the last few minutes (so any
worker can compute the 5-minute error rate, whichever worker scraped before), and the outcome of
the last scrape. The health monitor reads them through the `replica_figures` hook (builtin.py)
to fill the seed 000 columns of health_checks and to feed the error-rate rules of derive.py.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pilothouse.core.clock import utcnow
from pilothouse.core.db import Base
from pilothouse.core.types import JSONType


class ReplicaFigures(Base):
    """A replica's app-reported figures as of its last scrape."""

    __tablename__ = "replica_figures"

    replica_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    service_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    scraped_at: Mapped[datetime] = mapped_column(default=utcnow)
    up: Mapped[bool] = mapped_column(default=False)
    detail: Mapped[str | None] = mapped_column(sa.String(300), default=None)
    total_requests: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    total_errors: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    window_requests: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    window_errors: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    error_rate_5min: Mapped[float | None] = mapped_column(sa.Float, default=None)
    active_connections: Mapped[int | None] = mapped_column(default=None)
    uptime_seconds: Mapped[int | None] = mapped_column(default=None)
    memory_usage_mb: Mapped[float | None] = mapped_column(sa.Float, default=None)
    # [[epoch seconds, requests, errors], ...] oldest first, covering the last window and one
    # point before it (the baseline of the 5-minute increase).
    points: Mapped[list[list[float]]] = mapped_column(JSONType, default=list)
