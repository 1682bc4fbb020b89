"""Pooled PostgreSQL connections are pinged only after sitting idle (pool_ping)."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text

from siwa_web.infra import pool_ping
from siwa_web.infra.extensions import db
from support.tokens import assert_oauth_error
from support.tokens import post_token
from support.tokens import refresh_params


@pytest.fixture
def engine_for(postgres_database):
    """Build PostgreSQL engines with pool_ping installed, counting the pings sent."""
    engines = []

    def build(idle_seconds: float):
        engine = create_engine(postgres_database, pool_size=1, max_overflow=0)
        pool_ping.install(engine, idle_seconds)
        engine.pings = 0
        real = engine.dialect.do_ping

        def counting(dbapi_conn):
            engine.pings += 1
            return real(dbapi_conn)

        engine.dialect.do_ping = counting
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def terminate(url: str, pid: int | None = None) -> None:
    """End one backend, or every other backend of the database (a server restart, as seen)."""
    admin = create_engine(url)
    with admin.connect() as conn:
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND (CAST(:pid AS integer) IS NULL OR pid = :pid)"),
            {"pid": pid})
    admin.dispose()


def test_a_busy_connection_is_not_pinged(engine_for):
    engine = engine_for(idle_seconds=60)
    for _ in range(5):
        backend_pid(engine)
    assert engine.pings == 0


def test_an_idle_connection_is_pinged(engine_for):
    engine = engine_for(idle_seconds=0)
    for _ in range(3):
        backend_pid(engine)
    assert engine.pings == 3


def test_a_dead_idle_connection_is_replaced_before_use(engine_for, postgres_database):
    engine = engine_for(idle_seconds=0)
    first = backend_pid(engine)
    terminate(postgres_database, first)
    second = backend_pid(engine)  # the ping failed, the pool reconnected: no error
    assert second != first


def test_sqlite_gets_no_hooks(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    pool_ping.install(engine, 0)
    assert not engine.pool.dispatch.checkout


@pytest.fixture
def never_ping(app_config):
    app_config["DB_PING_IDLE_SECONDS"] = 3600


def test_server_gone_between_requests_is_one_503_then_recovery(
        never_ping, app, client, native_client, native_session):
    """A connection that died while pooled but was not idle long: 503 once, then served."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            assert not db.engine.pool.dispatch.checkout  # nothing to ping: a file is not a server
            return
        db.session.execute(text("SELECT 1"))
        db.session.remove()  # back to the pool, alive as far as it knows
        terminate(app.config["SQLALCHEMY_DATABASE_URI"])
    params = refresh_params(native_client, native_session["refresh_token"])
    response = post_token(client, params)
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"]
    assert post_token(client, params).status_code == 200  # the pool started afresh
