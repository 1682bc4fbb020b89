"""The database: Flask-SQLAlchemy and Alembic bound to the app, SQLite tuned, idle pings."""
from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import pool_ping
from .extensions import db
from .extensions import migrate


def init_app(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))
    with app.app_context():
        _tune_sqlite(db.engine)
        pool_ping.install(db.engine, float(app.config["DB_PING_IDLE_SECONDS"]))


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
