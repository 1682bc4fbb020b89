"""The declarative base, column types and helpers shared by the models (plain SQLAlchemy)."""
from __future__ import annotations

import uuid
from datetime import UTC
from datetime import datetime

from sqlalchemy import DateTime
from sqlalchemy import Index
from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator


def now_utc() -> datetime:
    """Return an aware UTC timestamp (the only kind stored)."""
    return datetime.now(UTC)


def new_id() -> str:
    """Return a random public identifier for a row."""
    return str(uuid.uuid4())


def pending_index(table: str) -> Index:
    """An outbox's unsent rows by age (a partial index): the metrics' depth and oldest-age
    query reads only these entries, however many sent rows wait for `flask prune`."""
    unsent = text("sent_at IS NULL")
    return Index(f"ix_{table}_pending", "created_at", postgresql_where=unsent,
                 sqlite_where=unsent)


class UTCDateTime(TypeDecorator):
    """Store naive UTC, hand back aware UTC, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every model: plain SQLAlchemy, so the protocol core can use the
    models without Flask. Flask-SQLAlchemy adopts its metadata (`SQLAlchemy(model_class=Base)`).
    """
