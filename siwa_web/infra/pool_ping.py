"""Check a pooled server connection before use only when it has been idle for a while.

SQLAlchemy's `pool_pre_ping` costs a round trip on every checkout — one more statement on
every request, as much as the refresh grant's INSERT. Connections that came back to the pool
a moment ago are alive in all but the rarest case; connections that sat idle are the ones a
database restart, a proxy's idle timeout or a failover leaves dead. So only those are pinged,
and a dead one is replaced before the request sees it (SQLAlchemy's disconnect-handling
recipe: raise `DisconnectionError` from the checkout hook). If the server dies between two
busy requests, the first statement fails, the request gets a 503 `temporarily_unavailable`,
and SQLAlchemy discards every connection of that pool.
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

_RETURNED = "siwa_returned_at"


def install(engine: Engine, idle_seconds: float) -> None:
    """Ping connections idle for `idle_seconds` or more at checkout (not for SQLite files)."""
    if engine.dialect.name == "sqlite":
        return
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn: Any, record: Any) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED)
        if returned is not None and time.monotonic() - returned < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("idle connection failed its ping") from exc
