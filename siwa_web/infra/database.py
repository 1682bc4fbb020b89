"""The database: Flask-SQLAlchemy and Alembic bound to the app, SQLite tuned, idle pings.

Also where a request's transaction ends. Flask-SQLAlchemy ends it in a teardown hook, after the
response is built and outside every error handler: a connection that died after the request's
last statement made its closing ROLLBACK raise there, and the server answered its own HTML 500.
`end_request_transaction` ends it earlier, while the answer can still change (web/errors.py
calls it from an after_request hook and answers 503 when it fails), and the teardown that
remains only logs a failure: by then there is nothing left to answer.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from . import pool_ping
from .extensions import db
from .extensions import migrate
from .transactions import COMMITTED

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    db.init_app(app)
    _replace_teardown(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))
    with app.app_context():
        _tune_sqlite(db.engine)
        pool_ping.install(db.engine, float(app.config["DB_PING_IDLE_SECONDS"]))


def request_committed() -> bool:
    """Whether this request's session has committed at least once."""
    scoped = db.session
    return scoped.registry.has() and bool(scoped().info.get(COMMITTED))


def end_request_transaction() -> None:
    """Close the request's session now (a later use of db.session starts a fresh one).

    :raises SQLAlchemyError: ending the open transaction failed (the connection is gone). The
        session is discarded all the same and its connection closed, never pooled again.
    """
    scoped = db.session
    if not scoped.registry.has():
        return
    session = scoped()
    # Held now: a failed close forgets its transaction but not the connection it checked out.
    connection = session.connection() if session.in_transaction() else None
    try:
        session.close()
    except SQLAlchemyError:
        if connection is not None:
            _discard(connection)
        raise
    finally:
        scoped.registry.clear()


def _discard(connection: Connection) -> None:
    """Close a connection whose transaction could not be ended; the pool opens a new one."""
    try:
        connection.invalidate()
        connection.close()
    except SQLAlchemyError:  # pragma: no cover - a second failure changes nothing
        log.debug("discarding a failed connection failed too",
                  extra={"event": "database_unavailable"})


def _replace_teardown(app: Flask) -> None:
    """Swap Flask-SQLAlchemy's teardown for one that cannot raise past the response."""
    funcs = app.teardown_appcontext_funcs
    funcs[:] = [f for f in funcs if getattr(f, "__func__", None) is not
                type(db)._teardown_session]
    app.teardown_appcontext(_quiet_teardown)


def _quiet_teardown(_exc: Any) -> None:
    """The session is normally gone already (end_request_transaction); CLI contexts end here."""
    try:
        end_request_transaction()
    except SQLAlchemyError as exc:
        log.error("database failure while ending a transaction: %s", driver_error_name(exc),
                  extra={"event": "database_unavailable"})


def driver_error_name(exc: BaseException) -> str:
    """The driver's exception class when SQLAlchemy wrapped one: safe to log (no SQL, no data)."""
    orig = getattr(exc, "orig", None)
    return type(orig if orig is not None else exc).__name__


def _tune_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout and enforced foreign keys for SQLite; nothing for other databases."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - exercised via SQLite
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
