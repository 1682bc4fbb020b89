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
    """One received notification; the primary key on `jti` makes duplicates no-ops.

    `outcome`: "applied", or why not: "unknown_aud", "unknown_sub", "unknown_type".
    """

    __tablename__ = "notification_events"

    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    sub: Mapped[str] = mapped_column(String(255))
    # The Apple client id it was addressed to (bundle id or Services ID), the client of ours
    # that maps to (None for the website's Services ID and for strangers) and what was done.
    aud: Mapped[str | None] = mapped_column(String(255))
    client_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)
