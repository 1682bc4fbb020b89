"""GET /healthz and GET /readyz: what they check, how fast they give up, and what they leave alone.

Dependencies are made to fail for real: a closed local port, a port that accepts connections and
never answers, a database file that cannot be opened — never by patching siwa-web's code.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import event

from siwa_web import create_app
from siwa_web.infra.extensions import db
from support.config import ISSUER
from support.config import REDIS_URL
from support.config import count_rows
from support.dashboard import SUB_A
from support.dashboard import Browser
from support.dashboard import app_sign_in
from support.servers import closed_port
from support.tokens import jwks_client_keys
from support.tokens import snapshot

PROBES = ("/healthz", "/readyz")



@pytest.fixture
def silent_port(silent_server):
    """A local port that accepts TCP connections and never says a word (a hung server)."""
    return silent_server.port


@pytest.fixture
def offline_config(apple_private_key_pem, tmp_path) -> dict:
    """create_app's test dict without a working database: each test names the one it breaks."""
    return {
        "TESTING": True, "SECRET_KEY": "test-secret-key", "ISSUER": ISSUER,
        "APPLE_EMULATOR": True, "RATELIMIT_ENABLED": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing/siwa.sqlite",
    }


def readyz(app):
    response = app.test_client().get("/readyz")
    return response, response.get_json()


def assert_probe_response(response, status: int) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")


def assert_names_no_secret(body: dict, *secrets: str) -> None:
    text = str(body)
    for secret in ("postgres", "127.0.0.1", "sqlite", "password", "redis://", *secrets):
        assert secret not in text, (secret, body)


# --- /healthz ---------------------------------------------------------------------------------


def test_healthz_answers_without_touching_the_database(app, client):
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        response = client.get("/healthz")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert_probe_response(response, 200)
    assert response.get_json() == {"status": "ok"}
    assert len(response.data) < 40
    assert statements == []


def test_healthz_answers_while_the_database_is_down(offline_config):
    app = create_app(offline_config)
    assert_probe_response(app.test_client().get("/healthz"), 200)
    assert readyz(app)[0].status_code == 503


# --- /readyz when everything answers ----------------------------------------------------------


def test_readyz_lists_each_check_and_writes_nothing(app, client, nothing_stored):
    before = count_rows(app)
    response = client.get("/readyz")
    assert_probe_response(response, 200)
    body = response.get_json()
    assert body["status"] == "ready" and "failed" not in body
    assert set(body["checks"]) == {"database", "signing_keys"}  # memory:// rate limits: no Redis
    assert body["checks"]["database"]["ok"] is True
    keys = body["checks"]["signing_keys"]
    # no key yet, and none is made: the first token request creates it
    assert keys == {"ok": True, "published": 0,
                    "note": "no signing key yet: the first token request creates one"}
    assert count_rows(app) == before  # not even an audit event


def test_readyz_names_the_signing_key_it_read(app, client, fake_apple):
    app_sign_in(app, fake_apple)  # the first token request creates the key
    before = snapshot(app, "signing_keys")
    body = client.get("/readyz").get_json()
    [kid] = jwks_client_keys(client)
    assert body["checks"]["signing_keys"] == {"ok": True, "published": 1, "signing_kid": kid}
    assert snapshot(app, "signing_keys") == before


def test_a_signing_key_that_cannot_be_decrypted_is_not_ready(app_config, app, fake_apple):
    app_sign_in(app, fake_apple)
    other = create_app(dict(app_config, TOKEN_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]))
    response, body = readyz(other)
    assert_probe_response(response, 503)
    assert body["failed"] == ["signing_keys"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["signing_keys"] == {
        "ok": False, "cause": "ValueError",
        "error": "the signing key cannot be decrypted: check TOKEN_ENCRYPTION_KEYS"}
    with other.app_context():
        db.engine.dispose()


@pytest.mark.skipif(REDIS_URL is None, reason="no Redis on 127.0.0.1:6379 "
                    "(set SIWA_TEST_REDIS_URL; .ci/run starts one)")
def test_readyz_asks_redis_when_it_holds_the_rate_limits(app_config):
    app = create_app(dict(app_config, RATELIMIT_STORAGE_URI=REDIS_URL))
    response, body = readyz(app)
    assert_probe_response(response, 200)
    assert body["checks"]["redis"]["ok"] is True
    with app.app_context():
        db.engine.dispose()


def test_the_postgresql_check_has_its_own_timeouts_and_keeps_the_urls_options(app_config):
    if not app_config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite is checked through the app's own engine")
    from siwa_web.ops.health import probe_engine

    app = create_app(dict(app_config, SQLALCHEMY_DATABASE_URI=app_config[
        "SQLALCHEMY_DATABASE_URI"] + "?options=-c%20search_path%3Dpublic,elsewhere"))
    engine = probe_engine(app, 0.5)
    with app.app_context():
        assert engine is not db.engine
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "500ms"
        assert conn.exec_driver_sql("SHOW search_path").scalar() == "public,elsewhere"
    assert engine.pool.status().startswith("NullPool")
    assert readyz(app)[0].status_code == 200
    with app.app_context():
        db.engine.dispose()


# --- /readyz when something does not answer ---------------------------------------------------


def test_postgresql_refusing_connections_is_not_ready(offline_config):
    offline_config["SQLALCHEMY_DATABASE_URI"] = (
        f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{closed_port()}/siwa")
    started = time.monotonic()
    response, body = readyz(create_app(offline_config))
    assert time.monotonic() - started < 2
    assert_probe_response(response, 503)
    assert body["status"] == "not ready"
    assert body["failed"] == ["database", "signing_keys"]
    assert body["checks"]["database"] == {
        "ok": False, "error": "SELECT 1 failed", "cause": "OperationalError"}
    assert body["checks"]["signing_keys"] == {
        "ok": False, "error": "not checked: the database did not answer"}
    assert_names_no_secret(body, "hunter2", "siwa")


def test_a_sqlite_file_that_cannot_be_opened_is_not_ready(offline_config):
    response, body = readyz(create_app(offline_config))  # its folder does not exist
    assert_probe_response(response, 503)
    assert body["failed"] == ["database", "signing_keys"]
    assert body["checks"]["database"]["cause"] == "OperationalError"
    assert_names_no_secret(body, "missing")


def test_redis_refusing_connections_is_not_ready(app_config, nothing_stored):
    app = create_app(dict(app_config, RATELIMIT_STORAGE_URI=f"redis://:hunter2@127.0.0.1:"
                                                            f"{closed_port()}/0"))
    response, body = readyz(app)
    assert_probe_response(response, 503)
    assert body["failed"] == ["redis"]
    assert body["checks"]["redis"] == {"ok": False, "error": "PING failed"}
    assert body["checks"]["database"]["ok"] is True
    assert_names_no_secret(body, "hunter2")
    with app.app_context():
        db.engine.dispose()


def test_an_unreachable_postgresql_costs_at_most_the_timeout(offline_config, silent_port):
    """A server that accepts the connection and never answers: 503 within ~2 s, every time,
    and probes arriving meanwhile wait for the check in flight instead of starting more."""
    offline_config["SQLALCHEMY_DATABASE_URI"] = (
        f"postgresql+psycopg://postgres@127.0.0.1:{silent_port}/siwa")
    app = create_app(offline_config)
    assert app.config["HEALTH_CHECK_TIMEOUT"] == 2.0  # the documented bound
    client = app.test_client()
    answers_ = []

    def probe() -> None:
        started = time.monotonic()
        response = client.get("/readyz")
        answers_.append((time.monotonic() - started, response.status_code, response.get_json()))

    threads = [threading.Thread(target=probe) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(answers_) == 3
    for elapsed, status, body in answers_:
        assert status == 503 and elapsed < 3.0, (elapsed, body)
        assert body["failed"] == ["database", "signing_keys"]
        assert body["checks"]["database"]["ok"] is False
    checking = [t for t in threading.enumerate() if t.name == "siwa-readyz-database"]
    assert len(checking) <= 1  # one check in flight per process, however many probes


def test_an_unreachable_redis_costs_at_most_the_timeout(app_config, silent_port):
    app = create_app(dict(app_config, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{silent_port}/0",
                          HEALTH_CHECK_TIMEOUT=0.5))
    started = time.monotonic()
    response, body = readyz(app)
    assert time.monotonic() - started < 1.5
    assert_probe_response(response, 503)
    assert body["failed"] == ["redis"]
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("value", [0, -1, "soon", 61])
def test_a_bad_timeout_stops_start_up(app_config, value):
    with pytest.raises(ValueError, match="HEALTH_CHECK_TIMEOUT"):
        create_app(dict(app_config, HEALTH_CHECK_TIMEOUT=value))


# --- what the probes leave alone ----------------------------------------------------------------


def test_a_signed_in_browser_probing_gets_no_cookie_and_touches_no_session(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    app.config["SESSION_TOUCH_INTERVAL"] = 0  # any request that loaded the session would write
    before = (count_rows(app), snapshot(app, "web_sessions"))
    for path in PROBES:
        assert_probe_response(me.client.get(path), 200)
    assert (count_rows(app), snapshot(app, "web_sessions")) == before


def test_probes_are_not_rate_limited(app_config, declarations):
    app = create_app(dict(app_config, RATELIMIT_DEFAULT="2/minute",
                          RATELIMIT_APPLICATION="3/minute"))
    client = app.test_client()
    statuses = {path: [client.get(path).status_code for _ in range(6)] for path in PROBES}
    assert statuses == {"/healthz": [200] * 6, "/readyz": [200] * 6}
    assert 429 in [client.get("/auth/login").status_code for _ in range(4)]  # limits are on
    with app.app_context():
        db.engine.dispose()


def test_probes_answer_head_and_refuse_other_methods(client):
    for path in PROBES:
        assert client.head(path).status_code == 200
        assert client.post(path).status_code == 405  # not a CSRF refusal: nothing to post


def test_siwa_web_logs_nothing_per_probe(app, client, caplog):
    client.get("/readyz")  # whatever a first request may log
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="siwa_web"):
        for _ in range(3):
            for path in PROBES:
                assert client.get(path).status_code == 200
    assert [r for r in caplog.records if r.name.startswith("siwa_web")] == []


def test_a_change_of_readiness_is_logged_once_each_way(offline_config, sqlite_template, tmp_path,
                                                       caplog):
    app = create_app(offline_config)  # its database folder does not exist yet
    client = app.test_client()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="siwa_web"):
        assert [client.get("/readyz").status_code for _ in range(3)] == [503] * 3
        (tmp_path / "missing").mkdir()
        shutil.copy(sqlite_template, tmp_path / "missing" / "siwa.sqlite")
        assert [client.get("/readyz").status_code for _ in range(3)] == [200] * 3
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name.startswith("siwa_web")]
    assert lines == [
        ("WARNING", "not ready: database (OperationalError); "
                    "signing_keys (not checked: the database did not answer)"),
        ("INFO", "ready again"),
    ]
    with app.app_context():
        db.engine.dispose()


def test_the_development_server_leaves_probes_out_of_its_access_log(app, caplog):
    """Werkzeug's server logs a line per request; not for the probes."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            for path in (*PROBES, "/readyz?verbose=1", "/auth/login"):
                requests.get(base + path, timeout=5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(
                    "/auth/login" in r.getMessage() for r in caplog.records):
                time.sleep(0.01)
    finally:
        server.shutdown()
        thread.join(5)
    access = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert len(access) == 1 and '"GET /auth/login HTTP/1.1" 200' in access[0], access
