"""A database that fails at any point of a request: the protocol's own 503, never a server 500.

Found in production: killing the app's PostgreSQL connections under GET /api/me load gave the
server's HTML "Internal Server Error". The query had succeeded; Flask-SQLAlchemy's teardown
ROLLBACK on the dead connection raised after the response was built, outside every handler.
Faults are injected at the driver boundary (support/faults.py), or, on PostgreSQL, by really
terminating the app's backend.
"""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import event

from siwa_web import create_app
from siwa_web.infra.extensions import db
from support.config import count_rows
from support.faults import kill_backend
from support.servers import elapsed
from support.tokens import bearer
from support.tokens import post_token
from support.tokens import refresh_params


@pytest.fixture
def app_config(app_config):
    """Every Bearer call reads the database (no liveness cache), so every call can fail."""
    return {**app_config, "LIVENESS_CACHE_SECONDS": 0}


def assert_json_503(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert response.is_json
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"
    assert "Traceback" not in response.get_data(as_text=True)


def assert_html_503(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "Our database did not answer" in page and "Traceback" not in page
    assert "SELECT" not in page and "OperationalError" not in page
    assert int(response.headers["Retry-After"]) > 0


# --- the closing ROLLBACK fails (the production case) ------------------------------------------


@pytest.mark.parametrize("path", ["/api/me", "/userinfo"])
def test_a_failed_closing_rollback_on_an_api_call_is_a_json_503(client, native_session, db_faults,
                                                               path, caplog):
    headers = bearer(native_session["access_token"])
    assert client.get(path, headers=headers).status_code == 200
    db_faults.fail_rollback()
    with caplog.at_level(logging.ERROR):
        response = client.get(path, headers=headers)
    assert db_faults.fired
    assert_json_503(response)
    assert "WWW-Authenticate" not in response.headers  # not a verdict on the token
    db_faults.disarm()
    assert client.get(path, headers=headers).status_code == 200  # the pool recovered


def test_a_failed_closing_rollback_on_a_page_is_the_html_503(signed_in, db_faults):
    assert signed_in.get("/dashboard").status_code == 200
    db_faults.fail_rollback()
    assert_html_503(signed_in.get("/dashboard"))
    db_faults.disarm()
    assert signed_in.get("/dashboard").status_code == 200


def test_a_failed_rollback_after_a_commit_keeps_the_answer(app, client, native_session,
                                                           native_client, db_faults):
    """The refresh grant committed its rotation: answering 503 would hide a stored change."""
    db_faults.fail_rollback()
    response = post_token(client, refresh_params(native_client, native_session["refresh_token"]))
    db_faults.disarm()
    assert response.status_code == 200, response.get_json()
    new = response.get_json()["refresh_token"]
    again = post_token(client, refresh_params(native_client, new))
    assert again.status_code == 200, again.get_json()


# --- any statement fails ---------------------------------------------------------------------


def statements_of(db_faults, call) -> int:
    """How many statements `call()` sends when nothing fails (it must succeed)."""
    db_faults.record()
    assert call().status_code == 200
    return len(db_faults.statements)


@pytest.mark.parametrize("path", ["/api/me", "/userinfo"])
def test_every_failed_statement_of_an_api_call_is_a_json_503(client, native_session, db_faults,
                                                            path):
    headers = bearer(native_session["access_token"])
    count = statements_of(db_faults, lambda: client.get(path, headers=headers))
    assert count >= 1
    for nth in range(1, count + 1):
        db_faults.fail_statement(".", nth=nth)
        assert_json_503(client.get(path, headers=headers))
        assert db_faults.fired == nth


def test_every_failed_statement_of_a_page_is_the_html_503(signed_in, db_faults):
    count = statements_of(db_faults, lambda: signed_in.get("/dashboard"))
    assert count >= 2
    for nth in range(1, count + 1):
        db_faults.fail_statement(".", nth=nth)
        assert_html_503(signed_in.get("/dashboard"))
        assert db_faults.fired == nth


def test_every_failed_statement_of_a_refresh_is_a_json_503_and_stores_nothing(
        app, client, native_session, native_client, db_faults):
    def refresh():
        return post_token(client, refresh_params(native_client, native_session["refresh_token"]))

    before = count_rows(app)
    for nth in range(1, 40):
        db_faults.fail_statement(".", nth=nth)
        response = refresh()
        if not db_faults.fired == nth:  # the whole grant ran: this is past its last statement
            db_faults.disarm()
            break
        assert_json_503(response)
        assert count_rows(app) == before, f"statement {nth} failed after something was stored"
    else:
        pytest.fail("the refresh grant never ran to the end")
    assert response.status_code == 200, response.get_json()  # the token had not been rotated


# --- the real thing on PostgreSQL: the backend is terminated after the query --------------------


def test_a_backend_terminated_after_the_query_is_a_json_503(app, client, native_session):
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("PostgreSQL only: SQLite has no server to kill (the driver faults above)")
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    with app.app_context():
        engine = db.engine
    armed = {"on": True}

    def terminate_own_backend(conn, _cursor, statement, *_args) -> None:
        if armed["on"] and "token_families" in statement:
            armed["on"] = False
            kill_backend(url, conn.connection.dbapi_connection.info.backend_pid)

    event.listen(engine, "after_cursor_execute", terminate_own_backend)
    try:
        response = client.get("/api/me", headers=bearer(native_session["access_token"]))
    finally:
        event.remove(engine, "after_cursor_execute", terminate_own_backend)
    assert not armed["on"]
    assert_json_503(response)
    assert client.get("/api/me", headers=bearer(native_session["access_token"])).status_code == 200


# --- connecting is bounded ---------------------------------------------------------------------


def test_postgresql_connections_get_the_connect_timeout(app_config):
    app_config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://u@127.0.0.1:1/none"
    app_config["DB_CONNECT_TIMEOUT"] = "3"
    app = create_app(app_config)
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["connect_timeout"] == 3
    with app.app_context():
        db.engine.dispose()


def test_a_url_that_sets_its_own_connect_timeout_keeps_it(app_config):
    app_config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://u@127.0.0.1:1/none"
    app_config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"connect_timeout": 9}}
    app = create_app(app_config)
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["connect_timeout"] == 9
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("value", ["0", "1", "x", "-5"])
def test_a_connect_timeout_below_two_seconds_is_refused(app_config, value):
    from siwa_web.config import ConfigError

    app_config["DB_CONNECT_TIMEOUT"] = value
    with pytest.raises(ConfigError, match="DB_CONNECT_TIMEOUT"):
        create_app(app_config)


def test_a_silent_database_fails_within_the_connect_timeout(app_config, silent_server):
    """A server that accepts TCP and never answers (hung PostgreSQL): 503 after the timeout."""
    app = create_app(dict(app_config, DB_CONNECT_TIMEOUT=2, SQLALCHEMY_DATABASE_URI=(
        f"postgresql+psycopg://postgres@127.0.0.1:{silent_server.port}/siwa")))
    client = app.test_client()
    (page, page_seconds) = elapsed(client.get, "/auth/apple/login")
    (api, api_seconds) = elapsed(client.get, "/.well-known/jwks.json")
    with app.app_context():
        db.engine.dispose()
    assert silent_server.accepted >= 2
    assert_html_503(page)
    assert_json_503(api)
    assert page_seconds < 2 + 1.5 and api_seconds < 2 + 1.5
