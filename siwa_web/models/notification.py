"""Apple server-to-server notifications we acted on, keyed by `jti` so each acts once."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .base import Base
from .base import UTCDateTime
from .base import now_utc


class NotificationEvent(Base):
    """One processed notification; the primary key on `jti` makes duplicates no-ops."""

    __tablename__ = "notification_events"

    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    sub: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
