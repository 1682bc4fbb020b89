"""Races on PostgreSQL (REL-01, REL-02, REL-03, REL-18) against a real threaded HTTP server.

Each request runs in its own server thread with its own database connection; the clients are
released together by a barrier. The client side uses urllib, so the fake Apple (requests_mock)
only ever sees the server's calls to Apple.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import jwt as pyjwt
import pytest
from werkzeug.serving import make_server

from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import AuditEvent
from siwa_web.models import RefreshToken
from siwa_web.models import TokenFamily
from siwa_web.models import User
from siwa_web.tokens.extension import server as oauth_server
from support.apple import BUNDLE_ID
from support.tokens import exchange_params
from support.tokens import refresh_params

REFRESHERS = 50
SIGN_INS = 20


@pytest.fixture
def concurrent_config(app_config):
    """Races are real on PostgreSQL; on SQLite (writers serialised) the same runs prove REL-16:
    no corruption, no 500, the invariants hold."""
    app_config.update(
        RATELIMIT_ENABLED=False,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "pool_size": REFRESHERS,
                                   "max_overflow": 10, "pool_timeout": 30},
    )


@pytest.fixture
def live(concurrent_config, app):
    """The app served on 127.0.0.1 by a threaded WSGI server; yields its base URL."""
    with app.app_context():
        oauth_server().keys.signer()  # the first key exists before the race starts
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(10)


def post(url: str, data: dict) -> tuple[int, dict]:
    body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def together(n: int, call) -> list:
    """Run call(i) in n threads released at the same moment."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def counts(app) -> dict[str, int]:
    with app.app_context():
        return {model.__tablename__: db.session.execute(
            db.select(db.func.count()).select_from(model)).scalar_one()
            for model in (User, AppleIdentity, TokenFamily, RefreshToken)}


def test_rel01_parallel_refreshes_get_one_successor(live, app, fake_apple, native_client):
    status, body = post(live + "/oauth/token", exchange_params(
        native_client, fake_apple.authorize(client_id=BUNDLE_ID).code))
    assert status == 200, body
    token = body["refresh_token"]
    for _ in range(5):
        before = counts(app)
        data = refresh_params(native_client, token)
        results = together(REFRESHERS, lambda i, data=data: post(live + "/oauth/token", data))
        assert [s for s, _ in results] == [200] * REFRESHERS, results
        successors = {b["refresh_token"] for _, b in results}
        assert len(successors) == 1
        assert len({b["access_token"] for _, b in results}) == REFRESHERS
        after = counts(app)
        assert after["refresh_tokens"] == before["refresh_tokens"] + 1
        with app.app_context():
            assert db.session.execute(db.select(TokenFamily.revoked_at)).scalar_one() is None
        token = successors.pop()
    assert post(live + "/oauth/token", refresh_params(native_client, token))[0] == 200


def test_rel03_parallel_first_sign_ins_make_one_user(live, app, fake_apple, native_client):
    sub = "000777.concurrent0000000000000000000000.0777"
    codes = [fake_apple.authorize(client_id=BUNDLE_ID, sub=sub).code for _ in range(SIGN_INS)]
    results = together(SIGN_INS, lambda i: post(
        live + "/oauth/token", exchange_params(native_client, codes[i])))
    assert [s for s, _ in results] == [200] * SIGN_INS, results
    subs = {pyjwt.decode(b["access_token"], options={"verify_signature": False})["sub"]
            for _, b in results}
    assert len(subs) == 1
    after = counts(app)
    assert after["users"] == 1 and after["apple_identities"] == 1
    assert after["token_families"] == SIGN_INS and after["refresh_tokens"] == SIGN_INS


def test_rel02_refresh_racing_revoke(live, app, fake_apple, native_client):
    for _ in range(10):
        status, body = post(live + "/oauth/token", exchange_params(
            native_client, fake_apple.authorize(client_id=BUNDLE_ID).code))
        token = body["refresh_token"]
        calls = [(live + "/oauth/revoke", {"token": token, "client_id": native_client.client_id}),
                 (live + "/oauth/token", refresh_params(native_client, token))]
        results = together(2, lambda i, calls=calls: post(*calls[i]))
        assert results[0][0] == 200
        assert results[1][0] in (200, 400)
        later = post(live + "/oauth/token", refresh_params(
            native_client, results[1][1].get("refresh_token", token)))
        assert later[0] == 400 and later[1]["error"] == "invalid_grant"
    with app.app_context():
        assert db.session.execute(db.select(TokenFamily).where(
            TokenFamily.revoked_at.is_(None))).first() is None


def test_rel18_parallel_revokes(live, app, fake_apple, native_client):
    status, body = post(live + "/oauth/token", exchange_params(
        native_client, fake_apple.authorize(client_id=BUNDLE_ID).code))
    results = together(20, lambda i: post(live + "/oauth/revoke", {
        "token": body["refresh_token"], "client_id": native_client.client_id}))
    assert [s for s, _ in results] == [200] * 20
    with app.app_context():
        revoked = db.session.execute(db.select(db.func.count()).select_from(AuditEvent).where(
            AuditEvent.event == "token_revoked")).scalar_one()
    assert revoked == 1
