"""Settings the whole suite shares, which databases answer, and the "nothing stored" count."""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import text

from siwa_web.infra.extensions import db

TEAM_ID = "TESTTEAM01"
KEY_ID = "TESTKEY001"
SERVICES_ID = "com.example.siwa.web"
ISSUER = "https://siwa.test"


def answers(port: int) -> bool:
    """Whether a local service listens on `port` (PostgreSQL, Redis) for the optional tests."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _postgres_url() -> str | None:
    """The PostgreSQL server tests run against: SIWA_TEST_DATABASE_URL, or a local one."""
    url = os.environ.get("SIWA_TEST_DATABASE_URL")
    if url:
        return url
    return "postgresql+psycopg://postgres@127.0.0.1:5432/postgres" if answers(5432) else None


PG_SERVER_URL = _postgres_url()
DB_BACKENDS = ["sqlite"] + (["postgresql"] if PG_SERVER_URL else [])


def _redis_url() -> str | None:
    """The Redis the Redis-backed tests use: SIWA_TEST_REDIS_URL, or a local one (DB 15)."""
    url = os.environ.get("SIWA_TEST_REDIS_URL")
    if url:
        return url  # CI starts Redis: a failure to reach it must fail the test, not skip it
    return "redis://127.0.0.1:6379/15" if answers(6379) else None


REDIS_URL = _redis_url()


def count_rows(app) -> dict[str, int]:
    """Row counts of every table: the "nothing stored" check of the security catalogue."""
    with app.app_context():
        return {
            t.name: db.session.execute(text(f'SELECT COUNT(*) FROM "{t.name}"')).scalar_one()
            for t in db.metadata.sorted_tables
        }


def empty_postgres(url: str) -> None:
    """Leave a PostgreSQL test database migrated and empty, as the next test expects it."""
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' "
            "AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
    engine.dispose()


@contextmanager
def recorded_statements(app):
    """Every SQL statement the app sends to its database while inside (whitespace folded)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
