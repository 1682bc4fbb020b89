"""Revocation (RFC 7009): catalogue RV-01 … RV-09 (docs/security.md), decisions D4 and D5.

Pinned: another client's token → 400 invalid_request, untouched (D4); our ID token → 400
unsupported_token_type; an access token revokes its family, and our API sees that at once (D5).
"""
from __future__ import annotations

import pytest

from support.tokens import assert_oauth_error
from support.tokens import audit_events
from support.tokens import bearer
from support.tokens import exchange
from support.tokens import post_token
from support.tokens import refresh_params
from support.tokens import snapshot

TABLES = ("token_families", "refresh_tokens")


def state(app):
    return {t: snapshot(app, t) for t in TABLES}


def revoke(client, native, token, *, as_json=False, **extra):
    data = {"token": token, "client_id": native.client_id, **extra}
    data = {k: v for k, v in data.items() if v is not None}
    if as_json:
        import json

        return client.post("/oauth/revoke", data=json.dumps(data), content_type="application/json")
    return client.post("/oauth/revoke", data=data)


def assert_ok(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_data() == b""
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers


def family_alive(client, native, session) -> bool:
    return client.get("/api/me", headers=bearer(session["access_token"])).status_code == 200


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_rv01_revoke_refresh_token(app, client, native_client, native_session, as_json):
    assert_ok(revoke(client, native_client, native_session["refresh_token"], as_json=as_json,
                     token_type_hint="refresh_token"))
    refreshed = post_token(client, refresh_params(native_client, native_session["refresh_token"]))
    assert_oauth_error(refreshed, 400, "invalid_grant")
    assert not family_alive(client, native_client, native_session)  # D5: at once at our API
    [event] = audit_events(app, "token_revoked")
    assert event["outcome"] == "success" and event["client_id"] == native_client.client_id
    assert event["details"]["token_type"] == "refresh_token"


def test_rv01_only_that_family(app, client, fake_apple, native_client, native_session):
    other = exchange(client, fake_apple, native_client).get_json()
    assert_ok(revoke(client, native_client, native_session["refresh_token"]))
    assert family_alive(client, native_client, other)
    refreshed = post_token(client, refresh_params(native_client, other["refresh_token"]))
    assert refreshed.status_code == 200


def test_rv02_already_revoked(app, client, native_client, native_session):
    assert_ok(revoke(client, native_client, native_session["refresh_token"]))
    before = state(app)
    assert_ok(revoke(client, native_client, native_session["refresh_token"]))
    assert state(app) == before
    assert len(audit_events(app, "token_revoked")) == 1


@pytest.mark.parametrize("token", ["random-string", "x" * 5000, "a.b.c", "eyJhbGciOi.e30.sig"])
def test_rv03_unknown_or_garbage(app, client, native_client, native_session, token):
    before = state(app)
    assert_ok(revoke(client, native_client, token))
    assert state(app) == before
    assert family_alive(client, native_client, native_session)


@pytest.mark.parametrize("missing", ["token", "client_id"])
def test_rv03_missing_parameter(app, client, native_client, native_session, missing):
    data = {"token": native_session["refresh_token"], "client_id": native_client.client_id}
    del data[missing]
    before = state(app)
    response = client.post("/oauth/revoke", data=data)
    assert_oauth_error(response, 400 if missing == "token" else 401,
                       "invalid_request" if missing == "token" else "invalid_client")
    assert state(app) == before


def test_rv03_unknown_client(app, client, native_client, native_session):
    before = state(app)
    response = client.post("/oauth/revoke", data={"token": native_session["refresh_token"],
                                                  "client_id": "cli_nope"})
    assert_oauth_error(response, 401, "invalid_client")
    assert state(app) == before


def test_rv03_duplicate_token(app, client, native_client, native_session):
    data = {"token": [native_session["refresh_token"], "x"], "client_id": native_client.client_id}
    assert_oauth_error(client.post("/oauth/revoke", data=data), 400, "invalid_request")
    assert family_alive(client, native_client, native_session)


@pytest.mark.parametrize("hint", ["access_token", "foo", "", "refresh_token"])
def test_rv04_rv05_hints_only_change_the_lookup_order(client, native_client, native_session, hint):
    assert_ok(revoke(client, native_client, native_session["refresh_token"], token_type_hint=hint))
    assert not family_alive(client, native_client, native_session)


def test_rv06_other_clients_token(app, client, native_client, other_client, native_session):
    before = state(app)
    for token in (native_session["refresh_token"], native_session["access_token"]):
        body = assert_oauth_error(revoke(client, other_client, token), 400, "invalid_request")
        assert token not in body["error_description"]
    assert state(app) == before
    assert family_alive(client, native_client, native_session)
    assert post_token(client, refresh_params(native_client,
                                             native_session["refresh_token"])).status_code == 200
    events = audit_events(app, "token_revoked")
    assert [e["outcome"] for e in events] == ["failure", "failure"]
    assert events[0]["reason"] == "client_mismatch"


@pytest.mark.parametrize("hint", ["access_token", None])
def test_rv07_revoke_access_token(app, client, native_client, native_session, hint):
    assert_ok(revoke(client, native_client, native_session["access_token"], token_type_hint=hint))
    assert not family_alive(client, native_client, native_session)
    refreshed = post_token(client, refresh_params(native_client, native_session["refresh_token"]))
    assert_oauth_error(refreshed, 400, "invalid_grant")
    [event] = audit_events(app, "token_revoked")
    assert event["details"]["token_type"] == "access_token"


def test_rv08_id_token(app, client, native_client, native_session):
    before = state(app)
    assert_oauth_error(revoke(client, native_client, native_session["id_token"]), 400,
                       "unsupported_token_type")
    assert state(app) == before
    assert family_alive(client, native_client, native_session)


def test_rv09_get_is_405(app, client, native_client, native_session, caplog):
    before = state(app)
    response = client.get("/oauth/revoke", query_string={"token": native_session["refresh_token"],
                                                         "client_id": native_client.client_id})
    assert response.status_code == 405
    assert state(app) == before
    assert native_session["refresh_token"] not in caplog.text


def test_rel18_repeated_revokes_record_one_revocation(app, client, native_client, native_session):
    for _ in range(5):
        assert_ok(revoke(client, native_client, native_session["refresh_token"]))
    assert len(audit_events(app, "token_revoked")) == 1


def test_revoke_family_helpers(app, client, fake_apple, native_client, native_session):
    """The dashboard's entry points: revoke one family, or all of a user's."""
    import jwt as pyjwt

    from siwa_web.infra.extensions import db
    from siwa_web.models import TokenFamily
    from siwa_web.oauth.refresh import revoke_family
    from siwa_web.oauth.refresh import revoke_user_families

    second = exchange(client, fake_apple, native_client).get_json()
    sid = pyjwt.decode(native_session["access_token"], options={"verify_signature": False})["sid"]
    sub = pyjwt.decode(second["access_token"], options={"verify_signature": False})["sub"]
    with app.app_context():
        family = db.session.get(TokenFamily, sid)
        assert revoke_family(db.session, family, "dashboard") is True
        assert family.revoked_at is not None and family.revoked_reason == "dashboard"
        assert revoke_family(db.session, family, "dashboard") is False
        db.session.commit()
        assert revoke_user_families(db.session, sub, "sign_out_everywhere") == 1
        assert revoke_user_families(db.session, sub, "sign_out_everywhere") == 0
        db.session.commit()
    assert not family_alive(client, native_client, native_session)
    assert not family_alive(client, native_client, second)
