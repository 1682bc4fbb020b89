"""Tell the Bearer-token liveness cache about every committed change that can end a session.

The ORM reports what a transaction touched (unit-of-work flushes and ORM UPDATE/DELETE
statements); after the commit the app's cache stops trusting what it read and signals the
other processes (`siwa_web.oauth.liveness`). A change that cannot affect liveness — the
last-used time a refresh writes on its family — does not count, so the cache survives traffic.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from ..infra.extensions import db
from ..models import TokenFamily
from ..models import User
from ..oauth.liveness import CHANNEL
from ..oauth.liveness import ChangeSignal
from ..oauth.liveness import FileSignal
from ..oauth.liveness import LocalSignal
from ..oauth.liveness import PostgresSignal

# What authenticate() reads and caches: a change to any of these ends or alters a session.
WATCHED: dict[type, tuple[str, ...]] = {
    TokenFamily: ("revoked_at", "expires_at", "user_id"),
    User: ("disabled_at", "email", "email_verified", "first_name", "last_name"),
}
FLAG = "siwa_liveness_changed"


def make_signal(app: Flask) -> ChangeSignal | None:
    """The cross-process signal for the app's database; None if there is none (no caching)."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = url.database
        if not path or path == ":memory:" or url.query.get("mode") == "memory":
            return LocalSignal()  # an in-memory database lives in one process
        return FileSignal(path + "-liveness")
    if backend == "postgresql":
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresSignal.for_database(conninfo, partial(_notify, app))
    return None


def _notify(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"NOTIFY {CHANNEL}")


def _watched_change(obj: Any) -> bool:
    attrs = WATCHED.get(type(obj))
    if attrs is None:
        return False
    state = inspect(obj)
    return any(state.attrs[name].history.has_changes() for name in attrs)


def _after_flush(session: Session, _context: Any) -> None:
    if any(type(obj) in WATCHED for obj in session.deleted) or any(
        _watched_change(obj) for obj in session.dirty
    ):
        session.info[FLAG] = True


def _do_orm_execute(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete) and any(
        mapper.class_ in WATCHED for mapper in state.all_mappers
    ):
        state.session.info[FLAG] = True
    elif isinstance(state.statement, TextClause) and not _is_select(state.statement.text):
        state.session.info[FLAG] = True  # hand-written SQL: assume the worst


def _is_select(sql: str) -> bool:
    return sql.lstrip()[:6].upper() in ("SELECT", "PRAGMA")


def _after_commit(session: Session) -> None:
    if session.info.pop(FLAG, False):
        from .extension import server

        server().liveness.changed()


def _after_rollback(session: Session) -> None:
    session.info.pop(FLAG, None)


def init_app(app: Flask) -> None:
    """Listen to Flask-SQLAlchemy's session once per process (apps share its session)."""
    for name, listener in (("after_flush", _after_flush), ("do_orm_execute", _do_orm_execute),
                           ("after_commit", _after_commit),
                           ("after_rollback", _after_rollback)):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)
